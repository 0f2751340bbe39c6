"""Input files as people write them (issue 28, points 3 and 4): CSV cells over 128 KB, byte-order marks, CSV lines
with more or fewer cells than the header, files in another encoding (`--encoding`), and compressed files that
break off or are corrupt: one line naming the file and how far it was read, the rows before the damage committed,
and `--resume` on the repaired file giving what a clean run gives."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rewardmill.cli import app

runner = CliRunner()
BOM = "\ufeff"


def score(source: Path, out: Path, *extra: str):
    return runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), *extra])


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_csv_cells_over_128_kb_are_read_whole(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(f"instruction,response\nq,{'x' * 300_000}\nq2,ab\n", encoding="utf-8")
    limit = csv.field_size_limit()
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert [(r["score"], r["error"]) for r in lines(tmp_path / "out.jsonl")] == [(300_000.0, None), (2.0, None)]
    assert csv.field_size_limit() == limit  # the process-wide limit is put back


@pytest.mark.parametrize("name", ["in.csv", "in.json", "in.jsonl", "in.jsonl.gz"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(name, tmp_path):
    rows = [{"instruction": "q", "response": "abc"}, {"instruction": "q", "response": "de"}]
    text = {"in.csv": "instruction,response\nq,abc\nq,de\n", "in.json": json.dumps(rows)}.get(
        name, "".join(json.dumps(r) + "\n" for r in rows))
    source = tmp_path / name
    data = (BOM + text).encode("utf-8")
    source.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert lines(tmp_path / "out.jsonl") == [{**r, "score": float(len(r["response"])), "error": None} for r in rows]


def test_csv_lines_with_more_or_fewer_cells_are_their_rows_errors(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('id,instruction,response\n1,q,abc\n2,q,ab,surplus,"more"\n3,q\n4,q,"multi\nline"\n',
                      encoding="utf-8")
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert lines(tmp_path / "out.jsonl") == [
        {"id": "1", "instruction": "q", "response": "abc", "score": 3.0, "error": None},
        {"id": "2", "instruction": "q", "response": "ab", "score": None,
         "error": "row 1: line 3 has 5 cells where the header has 3 (cells past the header: 'surplus', 'more')"},
        {"id": "3", "instruction": "q", "score": None,
         "error": "row 2: line 4 has 2 cells where the header has 3 (no cell for 'response')"},
        {"id": "4", "instruction": "q", "response": "multi\nline", "score": 10.0, "error": None},
    ]


def test_a_file_in_another_encoding_is_named_with_its_line_and_read_with_encoding(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes("instruction,response\nq,plain\nq,café crème\n".encode("latin-1"))
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == (f"error: {source}: line 3 is not valid utf-8 (byte 34 of the file, 0xe9); name "
                                      "the file's encoding with --encoding, e.g. --encoding latin-1 or --encoding "
                                      "cp1252")
    result = score(source, tmp_path / "out.jsonl", "--encoding", "latin-1")
    assert result.exit_code == 0, result.output
    assert [r["response"] for r in lines(tmp_path / "out.jsonl")] == ["plain", "café crème"]


def test_json_in_another_encoding_names_the_line_and_an_unknown_encoding_is_refused(tmp_path):
    source = tmp_path / "in.json"
    source.write_bytes('[\n{"instruction": "q", "response": "a"},\n{"instruction": "q", "response": "é"}\n]'
                       .encode("latin-1"))
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 2 and "line 3 is not valid utf-8" in result.output
    result = score(source, tmp_path / "out.jsonl", "--encoding", "klingon")
    assert result.exit_code == 2 and "--encoding klingon: not a text encoding" in result.output


ROWS = [{"id": i, "instruction": f"q{i}", "response": "r" * (i % 13)} for i in range(3000)]


def _gzip_rows() -> bytes:
    return gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode())


def _damage(data: bytes, how: str) -> bytes:
    cut = len(data) * 3 // 4
    if how == "truncated":
        return data[:cut]
    return data[:cut] + bytes(b ^ 0x5A for b in data[cut:cut + 64]) + data[cut + 64:]


def test_a_gzip_that_breaks_off_keeps_the_rows_before_it_and_resumes_once_repaired(tmp_path):
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(_damage(_gzip_rows(), "truncated"))
    out = tmp_path / "out.jsonl"
    result = score(source, out, "--chunk-rows", "100")
    assert result.exit_code == 2 and "Traceback" not in result.output and "Aborted" not in result.output
    message = result.output.strip()
    assert "\n" not in message and message.startswith(f"error: {source} breaks off after line ")
    assert "of the compressed file" in message and "run the same command with --resume" in message
    committed = int(message.split("; the ")[1].split(" rows before it")[0].replace(",", ""))
    assert 1000 < committed < 3000
    assert len(list(out.with_name("out.jsonl.partial").glob("chunk-*.json"))) == -(-committed // 100)

    # another file under the same name is refused, naming the input
    source.write_bytes(gzip.compress(b'{"instruction": "x", "response": "y"}\n' * 3000))
    refused = score(source, out, "--chunk-rows", "100", "--resume")
    assert refused.exit_code == 2 and "input" in refused.output and "cannot resume" in refused.output

    source.write_bytes(_gzip_rows())  # repaired
    resumed = score(source, out, "--chunk-rows", "100", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"{committed} of them committed by the interrupted run" in resumed.output
    clean = tmp_path / "clean.jsonl"
    assert score(source, clean, "--chunk-rows", "100").exit_code == 0
    assert out.read_bytes() == clean.read_bytes()
    assert [r["id"] for r in lines(out)] == list(range(3000))


def test_a_corrupt_gzip_is_one_line_and_keeps_nothing_it_cannot_trust(tmp_path):
    """gzip finds corruption by a checksum at the end (or an invalid code), after it has already handed out
    wrongly decompressed lines: those rows cannot be trusted, so nothing is kept."""
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(_damage(_gzip_rows(), "corrupt"))
    out = tmp_path / "out.jsonl"
    result = score(source, out, "--chunk-rows", "100")
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = result.output.strip()
    assert "\n" not in message and message.startswith(f"error: {source} is corrupt after line ")
    assert "none is kept" in message
    assert not out.exists() and not out.with_name("out.jsonl.partial").exists()
    source.write_bytes(_gzip_rows())
    assert score(source, out, "--chunk-rows", "100").exit_code == 0 and len(lines(out)) == 3000


def test_a_damaged_parquet_file_is_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), source)
    source.write_bytes(source.read_bytes()[:-100])
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert str(source) in result.output and len(result.output.strip().splitlines()) == 1


def test_dpo_keeps_the_rows_before_a_break_and_resumes_once_repaired(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}], "generations": ["a", "bb", "ccc"],
             "ratings": [i % 3, 1, 2]} for i in range(2000)]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    source, out = tmp_path / "in.jsonl.gz", tmp_path / "pairs.jsonl"
    source.write_bytes(_damage(data, "truncated"))
    result = runner.invoke(app, ["dpo", str(source), "-o", str(out), "--chunk-rows", "100"])
    assert result.exit_code == 2 and "breaks off after line" in result.output and "--resume" in result.output
    assert any(out.with_name("pairs.jsonl.partial").glob("chunk-*.json"))
    source.write_bytes(data)
    assert runner.invoke(app, ["dpo", str(source), "-o", str(out), "--chunk-rows", "100", "--resume"]).exit_code == 0
    clean = tmp_path / "clean.jsonl"
    assert runner.invoke(app, ["dpo", str(source), "-o", str(clean), "--chunk-rows", "100"]).exit_code == 0
    assert out.read_bytes() == clean.read_bytes() and len(lines(out)) == 2000


def test_a_late_byte_in_another_encoding_stops_before_any_work_and_encoding_reads_it(tmp_path):
    """The CSV file is decoded whole first: nothing is committed under the wrong encoding, so the run the error
    asks for (with --encoding) is not refused as a different run of a partial output."""
    source, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    text = "instruction,response\n" + "".join(f"q,plain{i}\n" for i in range(500)) + "q,café\n"
    source.write_bytes(text.encode("latin-1"))
    result = score(source, out, "--chunk-rows", "100")
    assert result.exit_code == 2 and "Traceback" not in result.output
    byte = len(text.encode("latin-1")) - len("é\n")
    assert result.output.strip() == (f"error: {source}: line 502 is not valid utf-8 (byte {byte:,} of the file, 0xe9); "
                                      "name the file's encoding with --encoding, e.g. --encoding latin-1 or --encoding "
                                      "cp1252")
    assert not out.with_name("out.jsonl.partial").exists()
    result = score(source, out, "--chunk-rows", "100", "--encoding", "latin-1")
    assert result.exit_code == 0, result.output
    assert [r["response"] for r in lines(out)][-2:] == ["plain499", "café"] and len(lines(out)) == 501


def test_utf16_csv_with_its_bom_and_old_mac_line_ends(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,instruction,response\r\n1,q,café\r\n2,q,\"two\r\nlines\"\r\n", encoding="utf-16")
    result = score(source, tmp_path / "out.jsonl", "--encoding", "utf-16")
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["response"], r["score"]) for r in lines(tmp_path / "out.jsonl")] == [
        ("1", "café", 4.0), ("2", "two\r\nlines", 10.0)]
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b'instruction,response\rq,abc\rq,"x\ry"\r')
    result = score(mac, tmp_path / "mac.jsonl")
    assert result.exit_code == 0, result.output
    assert [(r["response"], r["score"]) for r in lines(tmp_path / "mac.jsonl")] == [("abc", 3.0), ("x\ry", 3.0)]


def test_json_lines_in_utf16_are_refused_in_one_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"instruction": "q", "response": "a"}\n', encoding="utf-16")
    result = score(source, tmp_path / "out.jsonl", "--encoding", "utf-16")
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {source}: JSON Lines are read line by line as bytes, which utf-16 does "
                                      "not allow; convert the file to UTF-8 (e.g. iconv -f utf-16 -t utf-8)")


def test_broken_csv_quoting_is_that_rows_error_and_the_next_rows_are_read(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('id,instruction,response\n1,q,"ab"c\n2,q,"multi\nline",extra\n3,q,abc\n4,q,"cut off\nhere',
                      encoding="utf-8")
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert lines(tmp_path / "out.jsonl") == [
        {"score": None, "error": "row 0: line 2 has text after a quoted cell's closing quote (a quote inside a quoted "
                                 "cell is written twice: \"\"; csv: ',' expected after '\"')"},
        {"id": "2", "instruction": "q", "response": "multi\nline", "score": None,
         "error": "row 1: the record on lines 3-4 has 4 cells where the header has 3 (cells past the header: 'extra')"},
        {"id": "3", "instruction": "q", "response": "abc", "score": 3.0, "error": None},
        {"score": None, "error": "row 3: the record on lines 6-7 is cut off: the file ends inside a quoted cell, so "
                                 "the file may be truncated"},
    ]


def test_a_plain_jsonl_cut_in_its_last_line_scores_the_rest_and_says_so(tmp_path):
    source = tmp_path / "in.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in ROWS[:2]) + '{"id": 2, "instruction": "q2", "resp'
    source.write_text(text, encoding="utf-8")  # the last line cut inside its JSON, no newline
    result = score(source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    got = lines(tmp_path / "out.jsonl")
    assert [(r["score"], r["error"]) for r in got[:2]] == [(0.0, None), (1.0, None)]
    assert got[2]["score"] is None and got[2]["error"] == (
        "row 2: line 3 is cut off: the file ends inside its JSON (Unterminated string starting at), so the file may "
        "be truncated")
    source.write_text('{"instruction": "q", "response": "ab"}', encoding="utf-8")  # no newline, but whole: a row
    assert score(source, tmp_path / "whole.jsonl").exit_code == 0
    assert [r["score"] for r in lines(tmp_path / "whole.jsonl")] == [2.0]


def test_a_parquet_file_damaged_inside_is_one_line_and_a_repaired_one_scores(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, out = tmp_path / "in.parquet", tmp_path / "out.jsonl"
    pq.write_table(pa.Table.from_pylist(ROWS), source, row_group_size=500)
    good = source.read_bytes()
    page = pq.ParquetFile(source).metadata.row_group(4).column(2).data_page_offset
    source.write_bytes(good[:page] + bytes(b ^ 0x5A for b in good[page:page + 64]) + good[page + 64:])
    result = score(source, out, "--chunk-rows", "100")
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = result.output.strip()
    assert "\n" not in message and message.startswith(f"error: {source} is damaged after ")
    read = int(message.split(" is damaged after ")[1].split(" rows: ")[0].replace(",", ""))
    assert 0 < read <= 2000  # at most the row groups before the damaged one (batches may span row groups)
    assert "none is kept" in message and not out.with_name("out.jsonl.partial").exists()
    source.write_bytes(good)
    assert score(source, out, "--chunk-rows", "100").exit_code == 0 and len(lines(out)) == 3000


def test_eval_on_a_gzip_that_breaks_off_is_one_line(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": "a" * (i % 7), "rejected": "b" * (i % 5)} for i in range(3000)]
    source = tmp_path / "pairs.jsonl.gz"
    source.write_bytes(_damage(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()), "truncated"))
    result = runner.invoke(app, ["eval", str(source), "-m", "length", "-o", str(tmp_path / "report")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = result.output.strip()
    assert "\n" not in message and message.startswith(f"error: {source} breaks off after line ")
    assert "of the compressed file" in message
