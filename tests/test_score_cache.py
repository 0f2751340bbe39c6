"""Score cache (issue 17, in part): `--cache DIR` reuses scores across runs for the same model and settings, only
for the inputs already scored, and two processes can write to it at once."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rewardmill.cli import app
from rewardmill.reward_models.adapters import unpadded
from rewardmill.reward_models.adapters.classifier import ClassifierAdapter

runner = CliRunner()


def write(path, answers):
    path.write_text("".join(json.dumps({"instruction": "q", "response": a}) + "\n" for a in answers))
    return path


@pytest.fixture
def forwards(monkeypatch):
    rows = []
    forward = ClassifierAdapter.forward

    def counted(self, batch):
        if batch.items != unpadded.probe_items(self):  # not the probe at load that checks the unpadded path
            rows.append(len(batch.items))
        return forward(self, batch)

    monkeypatch.setattr(ClassifierAdapter, "forward", counted)
    return rows


def test_scores_are_reused_across_runs_and_only_for_the_same_settings(tmp_path, llama_dir, forwards):
    cache = tmp_path / "cache"
    first = write(tmp_path / "a.jsonl", ["one", "two", "three"])
    args = ["-m", str(llama_dir), "--cache", str(cache)]
    assert runner.invoke(app, ["score", str(first), "-o", str(tmp_path / "1.jsonl"), *args]).exit_code == 0
    assert sum(forwards) == 3
    forwards.clear()
    assert runner.invoke(app, ["score", str(first), "-o", str(tmp_path / "2.jsonl"), *args]).exit_code == 0
    assert forwards == [] and (tmp_path / "1.jsonl").read_text() == (tmp_path / "2.jsonl").read_text()
    overlapping = write(tmp_path / "b.jsonl", ["two", "four"])
    assert runner.invoke(app, ["score", str(overlapping), "-o", str(tmp_path / "3.jsonl"), *args]).exit_code == 0
    assert sum(forwards) == 1  # only "four" is new
    forwards.clear()
    result = runner.invoke(app, ["score", str(first), "-o", str(tmp_path / "4.jsonl"), *args, "--probabilities"])
    assert result.exit_code == 0 and sum(forwards) == 3  # another setting: another key
    probabilities = [json.loads(line)["score"] for line in (tmp_path / "4.jsonl").read_text().splitlines()]
    assert all(0 <= p <= 1 for p in probabilities)


def test_two_processes_write_to_one_cache_at_once(tmp_path, llama_dir):
    cache = tmp_path / "cache"
    jobs = []
    for n in range(2):
        source = write(tmp_path / f"in{n}.jsonl", [f"answer {n} {i}" for i in range(30)] + ["shared"])
        jobs.append(subprocess.Popen([sys.executable, "-m", "rewardmill.cli", "score", str(source), "-m", str(llama_dir),
                                      "-o", str(tmp_path / f"out{n}.jsonl"), "--cache", str(cache), "--threads", "1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for job in jobs:
        output, _ = job.communicate(timeout=300)
        assert job.returncode == 0, output
    import sqlite3

    rows = sqlite3.connect(cache / "reward-scores.sqlite").execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert rows == 61  # 30 + 30 distinct answers + 1 shared, each stored once
