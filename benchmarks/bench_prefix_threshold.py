"""From how many shared tokens prefix-shared scoring pays off: the measurement behind `min_shared_tokens`.

Synthetic groups of 2 and 4 conversations that share their first s tokens (Llama-3 template: BOS, the user
header and the first words of the user message) and differ after that (the rest of the user message and an
assistant answer, about 60-120 tokens each). `RewardModel.score` on the SmolLM2-135M-shaped reward model (fp32),
with prefix sharing on (`min_shared_tokens=1`, so every group is shared) against off, interleaved and repeated,
best shown; both models on the same CPU kernel. Timed as CPU time of this process (`time.process_time`) as well as
wall time: at one thread the CPU time is the work done, and it holds up on a machine that others are loading.

    python benchmarks/bench_prefix_threshold.py                      # s = 8..256, groups of 2 and 4 (~8 min)
    python benchmarks/bench_prefix_threshold.py --shared 16 32 --groups 2 --threads 2
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, Conversation, build_smol_llama_rm, load_hh_conversations  # noqa: E402

from rewardmill.reward_models.engines.prefix_groups import common_prefix  # noqa: E402


def word_pool(data_dir: Path) -> list[str]:
    """Plain words from hh-rlhf conversations: the text the synthetic rows are made of."""
    conversations, _ = load_hh_conversations(200, data_dir)
    words = [w for c in conversations for m in c for w in m["content"].split() if w.isalpha()]
    return sorted(set(words))


def shared_group(rng: random.Random, words: list[str], size: int, shared_words: int) -> list[Conversation]:
    """`size` conversations whose user message starts with the same `shared_words` words, then differs."""
    prefix = " ".join(rng.choices(words, k=shared_words))
    group = []
    for _ in range(size):
        user_rest = " ".join(rng.choices(words, k=rng.randint(10, 30)))
        answer = " ".join(rng.choices(words, k=rng.randint(40, 80)))
        group.append([{"role": "user", "content": f"{prefix} {user_rest}"},
                      {"role": "assistant", "content": answer}])
    return group


def workload(rm, rng: random.Random, words: list[str], shared: int, size: int, rows: int):
    """`rows` conversations in groups of `size` sharing about `shared` tokens (words added until the encoded
    rows share at least that many); returns them with the measured mean shared prefix, total tokens and the
    tokens computed when each group's prefix runs once."""
    conversations, shares, total = [], [], 0
    for _ in range(rows // size):
        shared_words = 1
        while True:
            group = shared_group(rng, words, size, shared_words)
            ids = [rm.adapter.encode(c).input_ids for c in group]
            prefix = min(common_prefix(ids[0], x) for x in ids[1:])
            if prefix >= shared:
                break
            shared_words += max(1, (shared - prefix) // 2)
        conversations.extend(group)
        shares.append(prefix)
        total += sum(map(len, ids))
    computed = total - sum(prefix * (size - 1) for prefix in shares)
    return conversations, sum(shares) / len(shares), total, computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 4], help="rows per group")
    parser.add_argument("--rows", type=int, default=48, help="rows per workload")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu-kernel", default="auto", choices=["auto", "torch", "onednn"])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()

    import transformers

    from rewardmill import RewardModel

    torch.set_num_threads(args.threads)
    model_dir = build_smol_llama_rm()
    on = RewardModel.from_pretrained(str(model_dir), threads=args.threads, dtype="float32", cpu_kernel=args.cpu_kernel,
                                     prefix_sharing=True, min_shared_tokens=1)
    kernel = (on.choices["cpu"] or {}).get("kernel", args.cpu_kernel)
    off = RewardModel.from_pretrained(str(model_dir), threads=args.threads, dtype="float32",
                                      cpu_kernel=kernel if kernel in ("torch", "onednn") else args.cpu_kernel,
                                      prefix_sharing=False)
    assert on.engine.prefix_sharing and not off.engine.prefix_sharing, on.engine.describe_sharing()
    words = word_pool(args.data_dir)
    rng = random.Random(0)
    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}; "
          f"{args.threads} thread(s); cpu choice {on.choices['cpu']}; {args.repeats} interleaved repeats, best shown",
          file=sys.stderr)
    on.score(workload(on, rng, words, 32, 2, 8)[0])  # warm-up
    off.score(workload(off, rng, words, 32, 2, 8)[0])

    print("| s (shared tokens, asked) | measured mean shared | group | rows | tokens | off tokens/CPU-s "
          "| on tokens/CPU-s | on / off (CPU time) | on / off (wall) | ideal (tokens / computed) | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.groups:
        for shared in args.shared:
            conversations, mean_shared, total, computed = workload(on, rng, words, shared, size, args.rows)
            best = {"on": float("inf"), "off": float("inf")}
            cpu = {"on": float("inf"), "off": float("inf")}
            scores = {}
            for repeat in range(args.repeats):
                order = [("on", on), ("off", off)] if repeat % 2 == 0 else [("off", off), ("on", on)]
                for name, rm in order:
                    gc.collect()
                    started, started_cpu = time.perf_counter(), time.process_time()
                    scores[name] = rm.score(conversations)
                    best[name] = min(best[name], time.perf_counter() - started)
                    cpu[name] = min(cpu[name], time.process_time() - started_cpu)
            diff = max(abs(a - b) for a, b in zip(scores["on"], scores["off"]))
            print(f"| {shared} | {mean_shared:.1f} | {size} | {len(conversations)} | {total} "
                  f"| {total / cpu['off']:.0f} | {total / cpu['on']:.0f} | {cpu['off'] / cpu['on']:.2f}x "
                  f"| {best['off'] / best['on']:.2f}x | {total / computed:.2f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
