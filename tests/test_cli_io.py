"""The CLI on every input format, output format and row shape; columns and order preserved."""

import csv
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rewardmill import RewardModel
from rewardmill.cli import app

runner = CliRunner()

Q = "What is the capital of France?"
CONV_A = [{"role": "user", "content": Q}, {"role": "assistant", "content": "Paris."}]
CONV_B = [{"role": "user", "content": Q}, {"role": "assistant", "content": "Berlin, I think."}]
PROMPT = [{"role": "user", "content": Q}]

SHAPES = {
    "conversation": ([{"id": 0, "conversation": CONV_A}, {"id": 1, "conversation": CONV_B}], "score"),
    "instruction+response": (
        [{"id": 0, "instruction": Q, "response": "Paris."}, {"id": 1, "instruction": Q, "response": "Berlin, I think."}],
        "score",
    ),
    "instruction+responses": ([{"id": 0, "instruction": Q, "responses": ["Paris.", "Berlin, I think."]}], "scores"),
    "messages+generations": (
        [{"id": 0, "messages": PROMPT, "generations": ["Paris.", "Berlin, I think."], "generation_models": ["a", "b"]}],
        "ratings",
    ),
}


@pytest.fixture(scope="module")
def expected(model_dirs):
    model = RewardModel.from_pretrained(str(model_dirs["llama"]), batch_size=1)
    return model.score([CONV_A, CONV_B])


def write_input(path, rows, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "dataset":
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))


def read_output(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def score_of(row, column):
    value = row[column]
    return json.loads(value) if isinstance(value, str) else value


def as_int(value):
    return int(value)


@pytest.mark.parametrize("fmt,suffix", [("jsonl", ".jsonl"), ("json", ".json"), ("csv", ".csv"),
                                        ("parquet", ".parquet"), ("dataset", "")])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_input_format_and_shape(tmp_path, llama_dir, expected, fmt, suffix, shape):
    rows, column = SHAPES[shape]
    source = tmp_path / f"input{suffix}"
    write_input(source, rows, fmt)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(out), "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    got = read_output(out)
    assert [as_int(r["id"]) for r in got] == [r["id"] for r in rows]
    for key in rows[0]:  # every input column is preserved
        assert key in got[0]
    values = [score_of(r, column) for r in got]
    flat = values if column == "score" else values[0]
    assert flat == pytest.approx(expected, abs=1e-5)
    assert all(r["error"] is None for r in got)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_every_output_format(tmp_path, llama_dir, expected, suffix):
    source = tmp_path / "in.jsonl"
    rows = [{"id": i, "conversation": c, "meta": {"k": i}} for i, c in enumerate([CONV_A, CONV_B, []])]
    write_input(source, rows, "jsonl")
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = read_output(out)
    assert [as_int(r["id"]) for r in got] == [0, 1, 2]
    assert [float(r["score"]) for r in got[:2]] == pytest.approx(expected, abs=1e-5)
    assert got[2]["score"] in (None, "")
    assert "empty conversation" in got[2]["error"]
    assert score_of(got[0], "meta") == {"k": 0}
    assert "1 row has errors" in result.output


def test_order_is_kept_across_chunks(tmp_path, llama_dir):
    convs = [[{"role": "user", "content": "q" * (i % 7 + 1)}, {"role": "assistant", "content": "a" * (30 - i)}]
             for i in range(30)]
    source = tmp_path / "in.jsonl"
    write_input(source, [{"id": i, "conversation": c} for i, c in enumerate(convs)], "jsonl")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(out), "--chunk-rows", "7",
                                 "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    got = read_output(out)
    reference = RewardModel.from_pretrained(str(llama_dir), batch_size=1).score(convs)
    assert [r["id"] for r in got] == list(range(30))
    assert [r["score"] for r in got] == pytest.approx(reference, abs=1e-5)


def test_custom_column_names(tmp_path, llama_dir, expected):
    source = tmp_path / "in.jsonl"
    write_input(source, [{"chat": CONV_A}, {"chat": CONV_B}], "jsonl")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(out),
                                 "--conversation-column", "chat", "--score-column", "reward", "--error-column", "why"])
    assert result.exit_code == 0, result.output
    got = read_output(out)
    assert [r["reward"] for r in got] == pytest.approx(expected, abs=1e-5)
    assert all(r["why"] is None for r in got)


def test_invalid_json_lines_are_row_errors(tmp_path, llama_dir):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"conversation": CONV_A}) + "\n{not json\n[1, 2]\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = read_output(out)
    assert got[0]["error"] is None
    assert got[1]["error"].startswith("row 1: line 2 is not valid JSON")
    assert got[2]["error"] == "row 2: line 3 is a JSON list, not an object"


def test_strict_exits_non_zero_with_the_row(tmp_path, llama_dir):
    source = tmp_path / "in.jsonl"
    write_input(source, [{"conversation": CONV_A}, {"conversation": []}], "jsonl")
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(tmp_path / "o.jsonl"), "--strict"])
    assert result.exit_code == 2
    assert "row 1: field 'conversation' is an empty conversation" in result.output


def test_missing_input_and_bad_output_extension(tmp_path, llama_dir):
    result = runner.invoke(app, ["score", str(tmp_path / "nope.jsonl"), "-m", str(llama_dir), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.output
    source = tmp_path / "in.jsonl"
    write_input(source, [{"conversation": CONV_A}], "jsonl")
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(tmp_path / "o.txt")])
    assert result.exit_code == 2 and "unknown output format" in result.output


def _help_text(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0
    return re.sub(r"\x1b\[[0-9;]*m", "", result.output)


def test_score_help_documents_every_option():
    import click
    import typer.main

    command = typer.main.get_command(app).commands["score"]
    text = _help_text("score")
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"option {param.opts} has no help text"
            assert param.opts[0] in text, f"{param.opts[0]} missing from --help"


def test_inspect_reports_detection(model_dirs):
    result = runner.invoke(app, ["inspect", str(model_dirs["gemma"])])
    assert result.exit_code == 0, result.output
    assert "classifier" in result.output and "Gemma3TextForSequenceClassification" in result.output
    assert "template writes BOS '<bos>' and the tokenizer would add another; rewardmill keeps one" in result.output
    assert "max length" in result.output
    result = runner.invoke(app, ["inspect", str(model_dirs["llama"])])
    assert "none in the tokenizer; using EOS" in result.output
    result = runner.invoke(app, ["inspect", str(model_dirs["bert"])])
    assert "pair" in result.output and "token_type_ids" in result.output


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, llama_dir):
    source = tmp_path / "in.jsonl"
    write_input(source, [{"conversation": CONV_A}] * 3, "jsonl")
    quiet = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(tmp_path / "a.jsonl")])
    assert quiet.exit_code == 0 and "scoring" not in quiet.output
    shown = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(tmp_path / "b.jsonl"), "--progress"])
    assert shown.exit_code == 0 and "3/3 rows" in shown.output and "row/s" in shown.output
