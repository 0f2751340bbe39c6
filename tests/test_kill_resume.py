"""Real processes killed with SIGKILL at seeded random moments, then resumed with --resume: every final output
must be byte-identical to an uninterrupted run's (issue 17's acceptance test).

A moment is drawn uniformly over the run's working window: from when its `OUTPUT.partial/` folder appears (the
model is loaded, scoring begins) to 1.1 times as long as the uninterrupted run took from there to its output's
appearance, so kills land before the first commit, between and inside commits, during assembly, and after. Two runs go
at once (one thread each) to halve the wall time.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from fake_judge_server import FakeJudgeServer
from rewardmill.checkpoint import committed_rows, partial_folder

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

ROWS = 1500


def score_rows() -> list[dict]:
    rows = []
    for i in range(ROWS):
        if i % 3 == 0:
            row = {"conversation": [{"role": "user", "content": f"question {i} " + "word " * (i % 13)},
                                    {"role": "assistant", "content": "answer " * (i % 17 + 1)}]}
        else:
            row = {"instruction": f"question {i} " + "more " * (i % 11), "response": "reply " * (i % 19 + 1)}
        if i % 97 == 13:
            row = {"instruction": f"question {i} without a response"}  # a per-row error
        if i >= 700:
            row["source"] = None if i < 900 else f"batch {i // 100}"  # a column that appears late (CSV, Parquet)
        rows.append(row)
    return rows


@dataclass
class Run:
    seconds: float  # from the partial folder's appearance to the output's
    returncode: int
    output: str


def run(args: list[str], out: Path, kill_after: float | None = None, timeout: float = 300) -> Run:
    """Run the CLI; with `kill_after`, SIGKILL it that many seconds after its partial folder appears."""
    process = subprocess.Popen([sys.executable, "-m", "rewardmill.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    folder = partial_folder(out)
    while not folder.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    finished = None
    while process.poll() is None and time.monotonic() < deadline:
        if finished is None and out.exists():
            finished = time.monotonic()
        if kill_after is not None and time.monotonic() >= started + kill_after:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    return Run((finished or time.monotonic()) - started, process.returncode, output)


def kill_and_resume(args: list[str], out: Path, moment: float) -> tuple[int, Run, Run]:
    killed = run(args, out, kill_after=moment)
    left = committed_rows(out)
    resumed = run([*args, "--resume"], out)
    return left, killed, resumed


def check(reference: Path, out: Path, left: int, killed: Run, resumed: Run) -> None:
    assert killed.returncode in (-signal.SIGKILL, 0), killed.output
    assert resumed.returncode == 0, resumed.output
    assert out.read_bytes() == reference.read_bytes(), f"differs after a kill that left {left} rows committed"
    assert not partial_folder(out).exists()


def test_score_killed_at_ten_random_moments_resumes_to_identical_output(tmp_path, llama_dir):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in score_rows()))
    formats = ("jsonl", "parquet", "csv")

    def args(out: Path) -> list[str]:
        return ["score", str(source), "-m", str(llama_dir), "-o", str(out), "--threads", "1", "--cpu-kernel",
                "torch", "--chunk-rows", "40"]

    with ThreadPoolExecutor(2) as pool:
        references = {fmt: tmp_path / f"reference.{fmt}" for fmt in formats}
        windows = dict(zip(formats, pool.map(lambda fmt: run(args(references[fmt]), references[fmt]), formats)))
        for fmt, reference in windows.items():
            assert reference.returncode == 0, reference.output
        rng = random.Random(17)
        plan = [(n, formats[n % 3]) for n in range(10)]
        moments = [rng.uniform(0, 1.1 * windows[fmt].seconds) for _, fmt in plan]
        outs = [tmp_path / f"killed-{n}.{fmt}" for n, fmt in plan]
        results = list(pool.map(lambda job: kill_and_resume(args(job[0]), job[0], job[1]), zip(outs, moments)))
    for (n, fmt), out, (left, killed, resumed) in zip(plan, outs, results):
        check(references[fmt], out, left, killed, resumed)
    lefts = [left for left, _, _ in results]
    # the kills must have hit the middle of runs, not only their start or end
    assert sum(0 < left < ROWS for left in lefts) >= 5, lefts


def test_judge_killed_at_three_random_moments_resumes_to_identical_output(tmp_path):
    rows = [{"instruction": f"Say something about {i}.", "response": "words " * (i % 9 + 1)} for i in range(160)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeJudgeServer() as server:
        def args(out: Path) -> list[str]:
            return ["judge", str(source), "--task", "rating", "-m", "toy-judge", "--base-url", server.url,
                    "-o", str(out), "--chunk-rows", "8", "--concurrency", "4"]

        reference = tmp_path / "reference.jsonl"
        window = run(args(reference), reference)
        assert window.returncode == 0, window.output
        rng = random.Random(5)
        moments = [rng.uniform(0, 1.1 * window.seconds) for _ in range(3)]
        outs = [tmp_path / f"killed-{n}.jsonl" for n in range(3)]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda job: kill_and_resume(args(job[0]), job[0], job[1]), zip(outs, moments)))
    for out, (left, killed, resumed) in zip(outs, results):
        check(reference, out, left, killed, resumed)
    assert any(0 < left < len(rows) for left, _, _ in results), [left for left, _, _ in results]
