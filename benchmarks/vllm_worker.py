"""vLLM side of bench_vs_vllm.py; runs inside the vLLM virtual environment, never in the project's.

Protocol on stdin/stdout, one JSON object per line:
  start-up: reads {"model": DIR, "prompts": [[ids...], ...]}, loads the pooling runner, prints {"ready": true,
            "startup_seconds": S}
  "run"   : classifies every prompt (raw logits, no activation), prints {"seconds": S, "scores": [...]}
  "quit"  : exits
"""

from __future__ import annotations

import json
import os
import sys
import time


def memory_share(meminfo: str = "/proc/meminfo", headroom: float = 0.5) -> float:
    """The `gpu_memory_utilization` to ask for: on CPU vLLM reads it as the share of total RAM it may use and
    refuses to start when less than that is free (its default 0.92 fails on any machine with other work on it).
    Ask for `headroom` of what is free now (vLLM's own processes take a share before it checks), at most its
    default."""
    fields = {}
    with open(meminfo) as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])
    share = headroom * fields["MemAvailable"] / fields["MemTotal"]
    return round(min(0.92, max(0.05, share)), 3)


def main() -> None:
    started = time.perf_counter()
    job = json.loads(sys.stdin.readline())
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm import LLM, PoolingParams

    llm = LLM(
        model=job["model"],
        runner="pooling",
        dtype="float32",
        enable_prefix_caching=False,
        max_model_len=job.get("max_model_len", 2048),
        gpu_memory_utilization=job.get("gpu_memory_utilization") or memory_share(),
        seed=0,
    )
    prompts = [{"prompt_token_ids": ids} for ids in job["prompts"]]
    params = PoolingParams(use_activation=False)
    print(json.dumps({"ready": True, "startup_seconds": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            continue
        begin = time.perf_counter()
        outputs = llm.classify(prompts, pooling_params=params, use_tqdm=False)
        seconds = time.perf_counter() - begin
        scores = [float(out.outputs.probs[0]) for out in outputs]
        print(json.dumps({"seconds": seconds, "scores": scores}), flush=True)


if __name__ == "__main__":
    main()
