"""Hostile input (issue 17, in part): malformed rows of every kind mixed with good ones. No crash, no hang; every
bad row gets an error naming it, and every good row is scored exactly as it is alone."""

import json
import random

import pytest
from typer.testing import CliRunner

from rewardmill import RewardModel, score_rows
from rewardmill.cli import app

runner = CliRunner()


def good_row(rng: random.Random, i: int) -> dict:
    answer = "".join(rng.choice("abc xyz") for _ in range(rng.randint(1, 40)))
    if i % 2:
        return {"id": i, "instruction": f"q{i}", "response": answer}
    return {"id": i, "conversation": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": answer}]}


BAD_LINES = [
    b'{"id": "BAD", "conversation": "not a list"}',
    b'{"id": "BAD", "conversation": [{"role": "user", "content": "q"}]}',
    b'{"id": "BAD", "conversation": [{"role": "wizard", "content": "q"}, {"role": "assistant", "content": "a"}]}',
    b'{"id": "BAD", "conversation": [{"role": "user", "content": {"nested": [1, 2]}}, {"role": "assistant", "content": "a"}]}',
    b'{"id": "BAD", "instruction": 7, "response": "a"}',
    b'{"id": "BAD", "instruction": "q", "response": ["a"]}',
    b'{"id": "BAD", "instruction": "q"}',
    b'{"id": "BAD"}',
    b'[1, 2, 3]',
    b'"just a string"',
    b'{"id": "BAD", "conversation": ',
    b'{"id": "BAD", "instruction": "q", "response": "\xff\xfe broken utf-8"}',
    b"[" * 100000 + b"]" * 100000,
    b'{"id": "BAD", "conversation": []}',
    b'{"id": "BAD", "conversation": null, "instruction": null, "response": null}',
]


def test_five_hundred_malformed_rows_among_good_ones(tmp_path):
    rng = random.Random(17)
    lines, expected = [], []  # expected: None for a bad line, else the good row
    for i in range(1000):
        if rng.random() < 0.55:
            lines.append(rng.choice(BAD_LINES))
            expected.append(None)
        else:
            row = good_row(rng, i)
            lines.append(json.dumps(row).encode())
            expected.append(row)
    lines.append(json.dumps({"id": "huge", "instruction": "q", "response": "x" * 1_000_000}).encode())
    expected.append({"id": "huge", "response": "x" * 1_000_000})
    turns = [{"role": r, "content": "t"} for _ in range(5000) for r in ("user", "assistant")]
    lines.append(json.dumps({"id": "long", "conversation": turns}).encode())
    expected.append({"id": "long", "conversation": turns})
    source = tmp_path / "hostile.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    assert sum(e is None for e in expected) >= 500
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "97"])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == len(expected)  # none lost, none duplicated
    for number, (row, want) in enumerate(zip(got, expected)):
        if want is None:
            assert row["score"] is None and row["error"].startswith(f"row {number}: "), row
        else:
            answer = want["response"] if "response" in want else want["conversation"][-1]["content"]
            assert row["error"] is None and row["score"] == float(len(answer))


def test_hostile_rows_with_a_reward_model(model_dirs):
    rm = RewardModel.from_pretrained(str(model_dirs["qwen2"]), max_length=512)
    good = [{"instruction": "q", "response": "fine"}]
    rows = [
        good[0],
        {"instruction": "q", "response": "x" * 200_000},  # over-long: a per-row error, quickly
        {"conversation": [{"role": r, "content": "t"} for _ in range(5000) for r in ("user", "assistant")]},
    ]
    out = list(score_rows(rm, rows)) + list(score_rows(rm, [{"instruction": "q", "responses": ["a"] * 10_000}]))
    alone = rm.score([("q", "fine")])[0]
    assert out[0]["score"] == pytest.approx(alone, abs=1e-5)
    assert "exceed the maximum length 512" in out[1]["error"] and "exceed the maximum length" in out[2]["error"]
    assert len(out[3]["scores"]) == 10_000 and out[3]["error"] is None
    assert len(set(round(s, 5) for s in out[3]["scores"])) == 1  # the same answer scores the same in every batch
