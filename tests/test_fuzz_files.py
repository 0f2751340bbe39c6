"""Fuzz (issue 28, acceptance): a seeded generator writes 600 hostile rows into every input format (wrong types,
huge cells, nulls, BOMs, mixed shapes, pass-through columns whose type changes, integers beyond 64 bits) and
`rewardmill score -m length` scores each file to every output format. Zero tracebacks; every good row scored
with the score written here (the length baseline: characters of the response); every bad row null with a reason;
row count and order preserved. Damaged compression: one line naming the file, the rows before the damage kept.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rewardmill.cli import app

ROWS = 600
BOM = "\ufeff"
OUTPUTS = ("jsonl", "json", "csv", "parquet")
runner = CliRunner()


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice("abc xyz\n\t\"',;é東🙂") for _ in range(rng.randint(low, high)))


def good_row(rng: random.Random, i: int) -> tuple[dict, float]:
    """A row that must be scored, and its score (characters of the response)."""
    answer = _text(rng, 0, 60) if rng.random() > 0.02 else "x" * 200_000  # some cells beyond csv's 128 KB
    if rng.random() < 0.5:
        conversation = [{"role": "user", "content": _text(rng, 1, 20)}, {"role": "assistant", "content": answer}]
        return {"id": i, "conversation": conversation}, float(len(answer))
    return {"id": i, "instruction": _text(rng, 1, 20) or "q", "response": answer}, float(len(answer))


def bad_row(rng: random.Random, i: int, kind: str) -> dict:
    """A row that must get an error: in CSV only what a cell can hold (text, missing cells), in Parquet only what
    one schema can hold (nulls, conversations that cannot be scored)."""
    if kind == "csv":  # a line with more or fewer cells than the header
        return rng.choice([{"id": i, "instruction": "q", "response": "a", "meta": "m", None: ["extra cell"]},
                           {"id": i, "instruction": "q"}, {"id": i}])
    if kind == "parquet":
        return rng.choice([
            {"id": i, "instruction": "q", "response": None},
            {"id": i, "instruction": None, "response": "a"},
            {"id": i, "conversation": [{"role": "user", "content": "only a question"}]},
            {"id": i, "conversation": [{"role": "wizard", "content": "q"}, {"role": "assistant", "content": "a"}]},
            {"id": i, "conversation": []},
            {"id": i},
        ])
    return rng.choice([
        {"id": i, "instruction": "q", "response": 7},
        {"id": i, "instruction": "q", "response": ["a", "list"]},
        {"id": i, "instruction": {"an": "object"}, "response": "a"},
        {"id": i, "instruction": None, "response": None},
        {"id": i, "conversation": [{"role": "user", "content": "only a question"}]},
        {"id": i, "conversation": "not a list"},
        {"id": i, "conversation": [{"role": "user", "content": 3.5}, {"role": "assistant", "content": "a"}]},
        {"id": i, "conversation": []},
        {"id": i},
    ])


def pass_through(rng: random.Random, i: int, typed: bool):
    """A pass-through column whose type changes down the file (kept losslessly, in any output format)."""
    if typed:
        return str(i)
    return rng.choice([i, str(i), None, [i, "x"], {"k": i}, 2**70 + i, float(i) + 0.5, True])


def rows_for(kind: str, seed: int = 28) -> tuple[list[dict], list[float | None]]:
    """Rows for an input format, and each row's expected score (None: the row must carry an error)."""
    rng = random.Random(seed)
    typed = kind == "csv"
    rows, want = [], []
    for i in range(ROWS):
        if rng.random() < 0.45:
            row, score = bad_row(rng, i, kind), None
        else:
            row, score = good_row(rng, i)
            if typed and "conversation" in row:  # a CSV cell holds text: the pair shape
                row = {"id": i, "instruction": row["conversation"][0]["content"],
                       "response": row["conversation"][1]["content"]}
        if kind != "parquet":
            row.setdefault("meta", pass_through(rng, i, typed))
        rows.append(row)
        want.append(score)
    return rows, want


def write_input(kind: str, folder: Path) -> tuple[Path, list[float | None]]:
    rows, want = rows_for(kind)
    if kind == "jsonl":
        path = folder / "in.jsonl"
        path.write_text(BOM + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif kind == "jsonl.gz":
        path = folder / "in.jsonl.gz"
        path.write_bytes(gzip.compress((BOM + "".join(json.dumps(r) + "\n" for r in rows)).encode()))
    elif kind == "json":
        path = folder / "in.json"
        path.write_text(BOM + json.dumps(rows), encoding="utf-8")
    elif kind == "csv":
        path = folder / "in.csv"
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["id", "instruction", "response", "meta"])
        for row, score in zip(rows, want):
            cells = [row[k] for k in ("id", "instruction", "response", "meta") if k in row] + row.get(None, [])
            writer.writerow(cells)
        path.write_text(BOM + buffer.getvalue(), encoding="utf-8")
    else:  # Parquet is typed by its schema: nulls and mixed shapes are what can go wrong there
        path = folder / "in.parquet"
        columns = list(dict.fromkeys(k for r in rows for k in r))  # from_pylist takes the first row's keys only
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows]), path, row_group_size=97)
    return path, want


def read_output(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    if path.suffix == ".csv":
        limit = csv.field_size_limit(1 << 24)
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                return list(csv.DictReader(handle))
        finally:
            csv.field_size_limit(limit)
    return pq.read_table(path).to_pylist()


def as_number(value) -> float | None:
    return None if value in (None, "") else float(value)


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "csv", "parquet"])
def test_hostile_rows_in_every_format_scored_to_every_format(kind, tmp_path):
    source, want = write_input(kind, tmp_path)
    assert sum(w is None for w in want) >= 200 and len(want) >= 500
    for fmt in OUTPUTS:
        out = tmp_path / f"out.{fmt}"
        result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "64"])
        assert result.exit_code == 0, result.output[-3000:]
        assert "Traceback" not in result.output
        got = read_output(out)
        assert [int(r["id"]) for r in got] == list(range(ROWS)), f"{kind} -> {fmt}: rows lost or reordered"
        for row, expected in zip(got, want):
            score, error = as_number(row.get("score")), row.get("error")
            if expected is None:
                assert score is None and error, f"{kind} -> {fmt}: row {row['id']} has no reason"
            else:
                assert not error and score == expected, f"{kind} -> {fmt}: row {row['id']}: {error}"


def _damaged_gz(tmp_path: Path, damage: str) -> tuple[Path, int]:
    """A .jsonl.gz of good rows, truncated or corrupted near its end; and how many rows it holds intact."""
    rows = [{"id": i, "instruction": f"q{i}", "response": "r" * (i % 13)} for i in range(3000)]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    if damage == "truncated":
        data = data[: len(data) * 3 // 4]
    else:
        cut = len(data) * 3 // 4
        data = data[:cut] + bytes(b ^ 0x5A for b in data[cut:cut + 64]) + data[cut + 64:]
    path = tmp_path / f"{damage}.jsonl.gz"
    path.write_bytes(data)
    return path, len(rows)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_compression_is_one_line_and_keeps_the_rows_before_it(damage, tmp_path):
    source, total = _damaged_gz(tmp_path, damage)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "100"])
    assert result.exit_code not in (0, 1) and "Traceback" not in result.output and "Aborted" not in result.output
    message = [line for line in result.output.splitlines() if source.name in line]
    assert message, result.output[-2000:]
    committed = out.with_name(out.name + ".partial")
    if damage == "truncated":  # what comes before a break is sound; before a checksum failure it may not be
        assert committed.is_dir() and any(committed.glob("chunk-*")), "the rows before the damage must be committed"
    else:
        assert not committed.exists() and not out.exists()
