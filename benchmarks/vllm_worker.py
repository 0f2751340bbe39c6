"""vLLM side of bench_vs_vllm.py; runs inside the vLLM virtual environment, never in the project's.

Protocol on stdin/stdout, one JSON object per line:
  start-up: reads {"model": DIR, "workloads": {NAME: [[ids...], ...]}, "enable_prefix_caching": BOOL}, loads the
            pooling runner, prints {"ready": true, "startup_seconds": S, "block_size": B}; with "rewardmill": true,
            the workloads are rewardmill inputs (conversations, or messages + generations rows) scored by rewardmill
            with --engine vllm (installed in the same environment) on the same runner settings. The older
            {"prompts": [...]} / {"conversations": [...]} forms are one workload named "default".
  "run NAME": empties vLLM's prefix cache (untimed: a repeated pass must not be served from the previous one),
            then classifies every prompt of the workload (raw logits, no activation), or scores it through
            rewardmill (render, tokenize, vLLM); prints {"seconds": S, "scores": [...]}; "run" alone: "default"
  "quit"  : exits
"""

from __future__ import annotations

import json
import os
import sys
import time


def rewardmill_runner(job: dict, settings: dict):
    """(llm, run(inputs) -> scores) for rewardmill --engine vllm; a messages + generations row gives one score
    per generation, in order."""
    from rewardmill import RewardModel, score_rows

    model = RewardModel.from_pretrained(job["model"], engine="vllm", dtype="float32",
                                        max_length=job.get("max_model_len", 2048), vllm_options=settings)

    def run(inputs: list) -> list[float]:
        if inputs and isinstance(inputs[0], dict) and "generations" in inputs[0]:
            return [score for row in score_rows(model, inputs) for score in row["ratings"]]
        return model.score(inputs)

    return model.engine.llm, run


def raw_runner(job: dict, settings: dict):
    """(llm, run(prompts) -> scores) for vLLM's own pooling runner on token ids."""
    from vllm import LLM, PoolingParams

    llm = LLM(model=job["model"], runner="pooling", dtype="float32", max_model_len=job.get("max_model_len", 2048),
              seed=0, **settings)
    params = PoolingParams(use_activation=False)

    def run(ids: list[list[int]]) -> list[float]:
        prompts = [{"prompt_token_ids": x} for x in ids]
        outputs = llm.classify(prompts, pooling_params=params, use_tqdm=False)
        return [float(out.outputs.probs[0]) for out in outputs]

    return llm, run


def block_size(llm) -> int | None:
    try:
        return llm.llm_engine.vllm_config.cache_config.block_size
    except AttributeError:
        return None


def main() -> None:
    started = time.perf_counter()
    job = json.loads(sys.stdin.readline())
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rewardmill.reward_models.engines.vllm_setup import free_memory_share

    if "prompts" in job:
        job["workloads"] = {"default": job["prompts"]}
    elif "conversations" in job:
        job["workloads"], job["rewardmill"] = {"default": job["conversations"]}, True
    # Several workers may share the machine (all but one paused): each asks for a quarter of the RAM free when it
    # starts.
    share = job.get("gpu_memory_utilization") or free_memory_share(headroom=0.25)
    caching = bool(job.get("enable_prefix_caching", False))
    settings = {"enable_prefix_caching": caching, "gpu_memory_utilization": share}
    llm, run = (rewardmill_runner if job.get("rewardmill") else raw_runner)(job, settings)

    print(json.dumps({"ready": True, "startup_seconds": time.perf_counter() - started,
                      "block_size": block_size(llm)}), flush=True)
    for line in sys.stdin:
        command, _, name = line.strip().partition(" ")
        if command == "quit":
            break
        if command != "run":
            continue
        if caching:
            llm.reset_prefix_cache()
        begin = time.perf_counter()
        scores = run(job["workloads"][name or "default"])
        seconds = time.perf_counter() - begin
        print(json.dumps({"seconds": seconds, "scores": scores}), flush=True)


if __name__ == "__main__":
    main()
