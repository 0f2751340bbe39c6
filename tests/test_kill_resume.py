"""Real processes killed with SIGKILL at seeded random moments, then resumed with --resume: every final output
must be byte-identical to an uninterrupted run's (issue 17's acceptance test).

Half the kills come once a random number of rows is committed, the other half at a moment drawn uniformly over the
run's working window: from when its `OUTPUT.partial/` folder appears (the model is loaded, scoring begins) to 1.1
times as long as the uninterrupted run took from there to its output's appearance, so kills land before the first
commit, between and inside commits, during assembly, and after. Two runs go at once (one thread each) to halve the
wall time.
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

from rewardmill.runs.checkpoint import committed_rows, partial_folder

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


def run(args: list[str], out: Path, kill_after: float | None = None, timeout: float = 300,
        kill_at_rows: int | None = None) -> Run:
    """Run the CLI; with `kill_after`, SIGKILL it that many seconds after its partial folder appears; with
    `kill_at_rows`, as soon as at least that many rows are committed."""
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
        if kill_at_rows is not None and committed_rows(out) >= kill_at_rows:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002 if kill_at_rows is None else 0.02)
    output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    return Run((finished or time.monotonic()) - started, process.returncode, output)


def kill_and_resume(args: list[str], out: Path, moment: float | None,
                    rows: int | None = None) -> tuple[int, Run, Run]:
    killed = run(args, out, kill_after=moment, kill_at_rows=rows)
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
        # half the kills at a random time of the window (before the first commit, during assembly, after), half
        # once a random number of rows is committed: a loaded machine slows the runs down, and kills by time
        # alone then land too early to be sure some hit the middle of a run
        kills = [(rng.uniform(0, 1.1 * windows[fmt].seconds), None) if n % 2 == 0
                 else (None, rng.randint(1, ROWS - 200)) for n, fmt in plan]
        outs = [tmp_path / f"killed-{n}.{fmt}" for n, fmt in plan]
        results = list(pool.map(lambda job: kill_and_resume(args(job[0]), job[0], *job[1]), zip(outs, kills)))
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


# ------------------------------------------------- issue 28, point 7: default settings, automatic choices reused

import itertools  # noqa: E402

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import rewardmill.runs.job  # noqa: E402
from rewardmill.cli import app  # noqa: E402
from rewardmill.reward_models import cpu  # noqa: E402
from rewardmill.runs.checkpoint import recorded_choices  # noqa: E402

runner = CliRunner()
needs_onednn = pytest.mark.skipif(not cpu.onednn_available(), reason="needs torch's oneDNN linear")


def timings_favouring(kernel: str, calls: list) -> callable:
    """A `cpu.probe_seconds` under which `kernel` is clearly the faster. `cpu.choose` times its candidates
    interleaved, torch's kernel then oneDNN, on one thread count here (the tests run with OMP_NUM_THREADS=1)."""
    turn = itertools.count()

    def probe(run, repeats=2) -> float:
        calls.append(kernel)
        timed = ("torch", "onednn")[next(turn) % 2]
        return 0.5 if timed == kernel else 1.0

    return probe


def interrupted_after(chunks: int):
    real = rewardmill.runs.job.score_row_chunks

    def score_row_chunks(*args, **kwargs):
        for number, chunk in enumerate(real(*args, **kwargs)):
            if number == chunks:
                raise KeyboardInterrupt
            yield chunk

    return score_row_chunks


@needs_onednn
def test_a_resume_makes_the_interrupted_runs_timed_choice_instead_of_timing_again(tmp_path, llama_dir, monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in score_rows()[:70]))

    def score(out: Path, favoured: str, *extra: str):
        calls: list = []
        with monkeypatch.context() as patch:
            patch.setattr(cpu, "probe_seconds", timings_favouring(favoured, calls))
            if "interrupt" in extra:
                patch.setattr(rewardmill.runs.job, "score_row_chunks", interrupted_after(2))
            flags = [flag for flag in extra if flag != "interrupt"]
            result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(out),
                                         "--chunk-rows", "10", *flags])
        return result, calls

    references = {kernel: tmp_path / f"reference-{kernel}.jsonl" for kernel in ("torch", "onednn")}
    for kernel, reference in references.items():
        assert score(reference, kernel)[0].exit_code == 0
    assert references["torch"].read_bytes() != references["onednn"].read_bytes()  # the choice shows in the bytes
    out = tmp_path / "out.jsonl"
    assert score(out, "onednn", "interrupt")[0].exit_code == 130
    assert recorded_choices(out)["cpu"] == {"kernel": "onednn", "threads": 1, "prepack": recorded_choices(out)["cpu"]["prepack"]}
    refused, calls = score(out, "torch", "--resume", "--cpu-kernel", "torch")
    assert refused.exit_code == 2 and 'choices.cpu.kernel: "onednn" -> "torch"' in refused.output
    resumed, calls = score(out, "torch", "--resume")  # timing again would now choose torch's kernel
    assert resumed.exit_code == 0, resumed.output
    assert calls == [] and out.read_bytes() == references["onednn"].read_bytes()
    torch.set_num_threads(1)


def test_a_run_without_prefix_sharing_resumes_without_it_and_one_with_it_refuses_a_change(tmp_path, llama_dir,
                                                                                         monkeypatch):
    """A run recorded without prefix sharing (as every run before it existed) resumes with the default options,
    still without it, to the bytes of an uninterrupted run; a run with it refuses --no-prefix-sharing."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in score_rows()[:70]))

    def score(out: Path, *flags: str, interrupt: bool = False):
        with monkeypatch.context() as patch:
            if interrupt:
                patch.setattr(rewardmill.runs.job, "score_row_chunks", interrupted_after(2))
            return runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(out), "--chunk-rows",
                                       "10", "--cpu-kernel", "torch", *flags])

    reference = tmp_path / "reference.jsonl"
    assert score(reference, "--no-prefix-sharing").exit_code == 0
    out = tmp_path / "out.jsonl"
    assert score(out, "--no-prefix-sharing", interrupt=True).exit_code == 130
    assert "prefix_sharing" not in recorded_choices(out)["engine"]
    resumed = score(out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == reference.read_bytes()
    shared = tmp_path / "shared.jsonl"
    assert score(shared, interrupt=True).exit_code == 130
    assert recorded_choices(shared)["engine"]["prefix_sharing"] is True
    refused = score(shared, "--resume", "--no-prefix-sharing")
    assert refused.exit_code == 2 and "choices.engine.prefix_sharing: true -> (none)" in refused.output


def test_automatic_options_take_the_recorded_choice_and_explicit_ones_stay():
    from rewardmill.reward_models.choices import reuse
    from rewardmill.reward_models.options import EngineOptions, LoadOptions

    recorded = {"cpu": {"kernel": "onednn", "threads": 2, "prepack": False},
                "engine": {"engine": "transformers", "device": "cpu", "batch_size": 16, "max_tokens_per_batch": 1024,
                           "min_fill": 0.9, "packing": False}}
    load, engine, chosen = reuse(recorded, LoadOptions(), EngineOptions(), cpu.CpuOptions(threads="auto"))
    assert (chosen.kernel, chosen.threads, chosen.prepack) == ("onednn", 2, False)
    assert (load.device, engine.batch_size, engine.max_tokens_per_batch, engine.packing) == ("cpu", 16, 1024, False)
    assert engine.prefix_sharing is False  # a record without it: a run without prefix sharing (or from before it)
    kept = reuse(recorded, LoadOptions(device="cuda"), EngineOptions(batch_size=8), cpu.CpuOptions("torch", 1))
    assert (kept[0].device, kept[1].batch_size, kept[2].kernel, kept[2].threads) == ("cuda", 8, "torch", 1)
    assert reuse(None, LoadOptions(), EngineOptions(), cpu.CpuOptions()) == (LoadOptions(), EngineOptions(),
                                                                               cpu.CpuOptions())


DEFAULT_ROWS = 300
CHUNK = 20


def run_link(args: list[str], out: Path, kill_at_rows: int | None, delay: float, env: dict) -> Run:
    """One run of a chain, killed `delay` seconds after at least `kill_at_rows` input rows are committed (so that
    every kill lands in the middle of the run, however fast or slow the machine is), or left to finish (None)."""
    process = subprocess.Popen([sys.executable, "-m", "rewardmill.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    started = time.monotonic()
    deadline = started + 300
    while process.poll() is None and time.monotonic() < deadline:
        if kill_at_rows is not None and committed_rows(out) >= kill_at_rows:
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    return Run(time.monotonic() - started, process.returncode, output)


@dataclass
class Chain:
    lefts: list[int]  # input rows committed after each kill
    choices: list  # the recorded choices after each kill (None: nothing committed)
    last: Run


def kill_chain(args: list[str], out: Path, plan: list[tuple[int, float]], env: dict) -> Chain:
    """Kill the run once `chunks` more chunks are committed (plus a delay), resuming each time; then let a
    resume finish."""
    lefts, choices = [], []
    for chunks, delay in plan:
        killed = run_link([*args, "--resume"], out, committed_rows(out) + chunks * CHUNK, delay, env)
        assert killed.returncode in (-signal.SIGKILL, 0), killed.output
        lefts.append(committed_rows(out))
        choices.append(recorded_choices(out))
    return Chain(lefts, choices, run_link([*args, "--resume"], out, None, 0.0, env))


@needs_onednn
def test_score_with_default_settings_killed_ten_times_resumes_to_the_same_bytes(tmp_path, llama_dir):
    """No --threads or --cpu-kernel: each process times torch's kernel against oneDNN (which round differently)
    and 1 thread against 2, on a busy machine. Two chains (JSONL, Parquet) of five kills each, every one in the middle
    of the run (after 1 or 2 more committed chunks and a seeded delay of up to 50 ms); every resume must
    take the recorded choices, so the output is byte-identical to an uninterrupted run with those choices."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in score_rows()[:DEFAULT_ROWS]))
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    formats = ("jsonl", "parquet")

    def args(out: Path, *flags: str) -> list[str]:
        return ["score", str(source), "-m", str(llama_dir), "-o", str(out), "--chunk-rows", str(CHUNK), *flags]

    references: dict[tuple, Path] = {}

    def reference(fmt: str, kernel: str, threads: int) -> Path:
        """An uninterrupted run with these choices, in this process."""
        if (fmt, kernel, threads) not in references:
            path = tmp_path / f"reference-{kernel}-{threads}.{fmt}"
            result = runner.invoke(app, args(path, "--cpu-kernel", kernel, "--threads", str(threads)))
            torch.set_num_threads(1)
            assert result.exit_code == 0, result.output
            references[(fmt, kernel, threads)] = path
        return references[(fmt, kernel, threads)]

    uninterrupted = {fmt: tmp_path / f"uninterrupted.{fmt}" for fmt in formats}
    rng = random.Random(28)
    outs = {fmt: tmp_path / f"killed.{fmt}" for fmt in formats}
    with ThreadPoolExecutor(2) as pool:
        windows = dict(zip(formats, pool.map(lambda fmt: run_link(args(uninterrupted[fmt]), uninterrupted[fmt], None,
                                                                  0.0, env), formats)))
        # five kills of a 15-chunk run, each 1 or 2 chunks on and up to 50 ms into the next: always mid-run
        plans = {fmt: [(rng.randint(1, 2), rng.uniform(0, 0.05)) for _ in range(5)] for fmt in formats}
        chains = dict(zip(formats, pool.map(lambda fmt: kill_chain(args(outs[fmt]), outs[fmt], plans[fmt], env),
                                            formats)))
    every_choice = [(k, t) for k in ("torch", "onednn") for t in (1, 2)]
    for fmt, window in windows.items():
        assert window.returncode == 0, window.output
        assert uninterrupted[fmt].read_bytes() in [reference(fmt, *choice).read_bytes() for choice in every_choice]
    for fmt, chain in chains.items():
        assert chain.last.returncode == 0, chain.last.output
        assert not partial_folder(outs[fmt]).exists()
        last = chain.choices[-1]
        if last is not None:  # the final run resumed: the choices recorded before it
            expected = [reference(fmt, last["cpu"]["kernel"], last["cpu"]["threads"])]
        else:  # the final run started afresh and chose for itself
            expected = [reference(fmt, *choice) for choice in every_choice]
        assert outs[fmt].read_bytes() in [path.read_bytes() for path in expected], (fmt, chain.lefts, chain.choices)
    lefts = [left for chain in chains.values() for left in chain.lefts]
    assert sum(0 < left < DEFAULT_ROWS for left in lefts) >= 5, lefts
