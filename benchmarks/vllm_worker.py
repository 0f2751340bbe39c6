"""vLLM side of bench_vs_vllm.py; runs inside the vLLM virtual environment, never in the project's.

Protocol on stdin/stdout, one JSON object per line:
  start-up: reads {"model": DIR, "prompts": [[ids...], ...]}, loads the pooling runner, prints {"ready": true,
            "startup_seconds": S}; with "conversations": [...] instead of "prompts", loads rewardmill with
            --engine vllm (installed in the same environment) on the same runner settings
  "run"   : classifies every prompt (raw logits, no activation), or scores every conversation through
            rewardmill (render, tokenize, vLLM), prints {"seconds": S, "scores": [...]}
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
    from rewardmill.reward_models.engines.vllm_setup import free_memory_share

    # Two workers may share the machine (one paused): each asks for a quarter of the RAM free when it starts.
    share = job.get("gpu_memory_utilization") or free_memory_share(headroom=0.25)
    settings = dict(enable_prefix_caching=False, gpu_memory_utilization=share)
    if "conversations" in job:
        from rewardmill import RewardModel

        model = RewardModel.from_pretrained(job["model"], engine="vllm", dtype="float32",
                                            max_length=job.get("max_model_len", 2048), vllm_options=settings)

        def run() -> list[float]:
            return model.score(job["conversations"])
    else:
        from vllm import LLM, PoolingParams

        llm = LLM(model=job["model"], runner="pooling", dtype="float32", max_model_len=job.get("max_model_len", 2048),
                  seed=0, **settings)
        prompts = [{"prompt_token_ids": ids} for ids in job["prompts"]]
        params = PoolingParams(use_activation=False)

        def run() -> list[float]:
            outputs = llm.classify(prompts, pooling_params=params, use_tqdm=False)
            return [float(out.outputs.probs[0]) for out in outputs]

    print(json.dumps({"ready": True, "startup_seconds": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            continue
        begin = time.perf_counter()
        scores = run()
        seconds = time.perf_counter() - begin
        print(json.dumps({"seconds": seconds, "scores": scores}), flush=True)


if __name__ == "__main__":
    main()
