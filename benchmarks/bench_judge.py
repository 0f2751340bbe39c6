"""Judge throughput: an OpenAI-compatible server at concurrency 1 vs the default, and the local transformers
backend batched vs one prompt at a time, on the same rows, in one run. Prints a markdown table.

The server part needs a running server serving the judge model under --server-model, e.g. vLLM's CPU build with
SmolLM2-135M-Instruct saved as a plain directory (tests/real_models.py builds it):

    VLLM_CPU_KVCACHE_SPACE=1 python -m vllm.entrypoints.openai.api_server --model DIR --served-model-name smollm2 \\
        --host 127.0.0.1 --port 8011 --max-model-len 2048 --dtype float32 --gpu-memory-utilization 0.3
    python benchmarks/bench_judge.py --base-url http://127.0.0.1:8011/v1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def rows(n: int, data_dir: Path) -> list[dict]:
    pairs = [json.loads(line) for line in (data_dir / "pairs-sample.jsonl").read_text().splitlines()]
    return [{"instruction": p["prompt"][-1]["content"], "response": p["chosen"]} for p in pairs[:n]]


def timed(judge, data: list[dict]) -> tuple[float, list[dict]]:
    from rewardmill import score_rows

    started = time.perf_counter()
    out = list(score_rows(judge, data))
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="OpenAI-compatible server (skip the server part without it)")
    parser.add_argument("--server-model", default="smollm2")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from real_models import smollm2_dir

    from rewardmill.judges import GenerationSettings, Judge, OpenAIBackend, make_task
    from rewardmill.judges.local import TransformersBackend
    from rewardmill.reward_models.options import EngineOptions

    data = rows(args.rows, args.data_dir)
    settings = GenerationSettings(max_tokens=args.max_new_tokens)
    results = []
    if args.base_url:
        for concurrency in (1, 16):
            backend = OpenAIBackend(args.server_model, args.base_url, concurrency=concurrency, settings=settings)
            seconds, _ = timed(Judge(make_task("rating"), backend, retries=0), data)
            results.append((f"HTTP server, concurrency {concurrency}", seconds))
    directory = str(smollm2_dir())
    for label, batching in (("local, one prompt at a time", EngineOptions(batch_size=1, max_tokens_per_batch=10**6)),
                            ("local, length-sorted batches (default)", None)):
        backend = TransformersBackend(directory, settings, batching=batching) if batching else TransformersBackend(
            directory, settings)
        seconds, _ = timed(Judge(make_task("rating"), backend, retries=0), data)
        results.append((label, seconds))
    print(f"Run {time.strftime('%Y-%m-%d %H:%M %Z')}; python {platform.python_version()}, torch {torch.__version__}, "
          f"{args.threads} thread(s); task rating, {len(data)} rows, max_new_tokens {args.max_new_tokens}, greedy.\n")
    print("| backend | seconds | rows/s | vs one at a time |\n|---|---:|---:|---:|")
    baseline = {label: s for label, s in results}
    slowest = baseline.get("HTTP server, concurrency 1")
    local_one = baseline["local, one prompt at a time"]
    for label, seconds in results:
        reference = slowest if label.startswith("HTTP") else local_one
        print(f"| {label} | {seconds:.1f} | {len(data) / seconds:.2f} | {reference / seconds:.2f}x |")


if __name__ == "__main__":
    main()
