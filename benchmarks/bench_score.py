"""Throughput of rewardmill's batching engine against the two ways people score with transformers today.

Strategies, all on the same model, data and thread count, interleaved and repeated in one run:
  naive loop   one `apply_chat_template(tokenize=True)` + forward per row, score = logits[0][0] (seed 003)
  distilabel   batches of 16 in input order, template-rendered text padded to the batch's longest row
  rewardmill   `RewardModel.from_pretrained(dir, batch_size=B, max_tokens_per_batch=M).score(conversations)`
Model loading is never timed; tokenization is (every strategy must do it). Prints a markdown table.

    python benchmarks/bench_score.py            # full: 192 rows, 2 repeats, ~10 minutes on 2 cores
    python benchmarks/bench_score.py --quick    # smoke test: 24 rows, 1 repeat, 2 engine settings
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    CACHE_DIR,
    DATA_DIR,
    Conversation,
    build_smol_llama_rm,
    load_hh_conversations,
    matmul_peak_gflops,
    non_embedding_params,
)

DISTILABEL_BATCH = 16
FULL_SETTINGS = "default,4x512,8x1024,32x2048,64x4096"
QUICK_SETTINGS = "default,64x4096"


@dataclass
class Strategy:
    name: str
    score: Callable[[list[Conversation]], list[float]]
    padded_tokens: int  # tokens the model is fed, padding included
    seconds: dict[int, list[float]] = field(default_factory=dict)  # threads -> one time per repeat
    max_diff: dict[int, float] = field(default_factory=dict)  # threads -> max |score - naive score|


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="conversations to score (default 192; 24 with --quick)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 2; 1 with --quick)")
    parser.add_argument("--threads", default="2", help="comma-separated torch thread counts (default 2)")
    parser.add_argument(
        "--settings", help=f"rewardmill batch_size x max_tokens_per_batch list, 'default' = the engine's own choice "
        f"(default {FULL_SETTINGS}; "
        f"{QUICK_SETTINGS} with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="small smoke-test run (well under a minute)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"shared data directory (default {DATA_DIR})")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the built model is cached")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args()
    args.rows = args.rows or (24 if args.quick else 192)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.threads = [int(t) for t in args.threads.split(",")]
    settings = args.settings or (QUICK_SETTINGS if args.quick else FULL_SETTINGS)
    args.settings = [(None, None) if s == "default" else tuple(int(x) for x in s.split("x")) for s in settings.split(",")]
    return args


def padded_size(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def baselines(model, tokenizer, lengths: list[int]) -> list[Strategy]:
    """The naive loop and distilabel-style batching, both plain transformers under inference_mode."""

    @torch.inference_mode()
    def naive(convs: list[Conversation]) -> list[float]:
        scores = []
        for conv in convs:
            encoded = tokenizer.apply_chat_template(conv, tokenize=True, return_dict=True, return_tensors="pt")
            scores.append(model(encoded["input_ids"]).logits[0][0].item())
        return scores

    @torch.inference_mode()
    def distilabel(convs: list[Conversation]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(convs), DISTILABEL_BATCH):
            texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in convs[start : start + DISTILABEL_BATCH]]
            batch = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
            scores.extend(model(**batch).logits[:, 0].tolist())
        return scores

    in_order = [list(range(s, min(s + DISTILABEL_BATCH, len(lengths)))) for s in range(0, len(lengths), DISTILABEL_BATCH)]
    return [
        Strategy("naive loop (1 row/forward)", naive, sum(lengths)),
        Strategy(f"distilabel-style ({DISTILABEL_BATCH}/batch, input order)", distilabel, padded_size(in_order, lengths)),
    ]


def engines(model_dir: Path, settings: list[tuple[int, int]], conversations, ids: list[list[int]]) -> list[Strategy]:
    """One RewardModel per engine setting, loaded now so that loading is never timed."""
    from rewardmill import RewardModel
    from rewardmill.reward_models.engines.transformers_engine import plan_batches

    strategies = []
    lengths = [len(x) for x in ids]
    for batch_size, max_tokens in settings:
        rm = RewardModel.from_pretrained(str(model_dir), batch_size=batch_size, max_tokens_per_batch=max_tokens)
        encoded = [rm.adapter.encode(c).input_ids for c in conversations]
        if encoded != ids:  # same tokens as the baselines, or the comparison means nothing
            raise SystemExit("rewardmill encodes differently from apply_chat_template(tokenize=True)")
        padded = padded_size(plan_batches(lengths, rm.engine_options), lengths)
        label = "defaults" if batch_size is None else f"batch_size={batch_size} max_tokens={max_tokens}"
        options = rm.engine_options
        strategies.append(Strategy(f"rewardmill {label} ({options.batch_size}/{options.max_tokens_per_batch}, "
                                   f"{rm.cpu_choice.kernel})", rm.score, padded))
    return strategies


def measure(strategies: list[Strategy], conversations, threads: list[int], repeats: int) -> dict[int, list[float]]:
    """Time every strategy at every thread count, interleaved; returns the matmul peaks (GFLOP/s) measured."""
    peaks: dict[int, list[float]] = {t: [] for t in threads}
    naive = strategies[0]
    for repeat in range(repeats):
        for t in threads:
            torch.set_num_threads(t)
            peaks[t].append(matmul_peak_gflops(t))
            if repeat == 0:  # warm-up at this thread count: thread pool, allocator, every code path
                for strategy in strategies:
                    strategy.score(conversations[:4])
            scores: dict[str, list[float]] = {}
            shift = repeat % len(strategies)  # rotate the order so drift does not always hit the same strategy
            for strategy in strategies[shift:] + strategies[:shift]:
                gc.collect()
                started = time.perf_counter()
                scores[strategy.name] = strategy.score(conversations)
                elapsed = time.perf_counter() - started
                strategy.seconds.setdefault(t, []).append(elapsed)
                print(f"  repeat {repeat + 1}/{repeats}, {t} threads: {strategy.name}: {elapsed:.1f} s", file=sys.stderr)
            reference = scores[naive.name]
            for strategy in strategies:
                diff = max(abs(a - b) for a, b in zip(scores[strategy.name], reference))
                strategy.max_diff[t] = max(diff, strategy.max_diff.get(t, 0.0))
    return peaks


def table(strategies: list[Strategy], rows: int, real_tokens: int, flops: float, peaks: dict[int, list[float]]) -> list[dict]:
    results = []
    for t in sorted(peaks):
        naive_s, distil_s = (min(s.seconds[t]) for s in strategies[:2])
        for s in strategies:
            best = min(s.seconds[t])
            results.append(
                {
                    "strategy": s.name,
                    "threads": t,
                    "seconds_best": best,
                    "seconds_all": s.seconds[t],
                    "rows_per_s": rows / best,
                    "tokens_per_s": real_tokens / best,
                    "padding_overhead": s.padded_tokens / real_tokens - 1,
                    "peak_share": flops / best / (max(peaks[t]) * 1e9),
                    "vs_naive": naive_s / best,
                    "vs_distilabel": distil_s / best,
                    "max_abs_diff_vs_naive": s.max_diff[t],
                }
            )
    return results


def markdown(results: list[dict]) -> str:
    lines = [
        "| strategy | threads | rows/s | tokens/s | padding | share of peak | vs naive | vs distilabel "
        "| max abs diff vs naive | seconds (best / worst) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['strategy']} | {r['threads']} | {r['rows_per_s']:.2f} | {r['tokens_per_s']:.0f} "
            f"| {r['padding_overhead']:+.0%} | {r['peak_share']:.2f} | {r['vs_naive']:.2f}x | {r['vs_distilabel']:.2f}x "
            f"| {r['max_abs_diff_vs_naive']:.1e} | {min(r['seconds_all']):.1f} / {max(r['seconds_all']):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = build_smol_llama_rm(args.cache_dir)
    conversations, skipped = load_hh_conversations(args.rows, args.data_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.eos_token  # Llama-3 has no pad token; <|end_of_text|> never occurs in the template
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.config.pad_token_id = tokenizer.pad_token_id  # the model's own pooling finds the last non-pad token
    ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in conversations]
    assert max(max(x) for x in ids) < model.config.vocab_size
    lengths = [len(x) for x in ids]
    real_tokens = sum(lengths)
    params = non_embedding_params(model)
    flops = 2 * params * real_tokens

    strategies = baselines(model, tokenizer, lengths) + engines(model_dir, args.settings, conversations, ids)
    print(f"{len(strategies)} strategies x {len(args.threads)} thread counts x {args.repeats} repeats", file=sys.stderr)
    peaks = measure(strategies, conversations, args.threads, args.repeats)
    results = table(strategies, len(conversations), real_tokens, flops, peaks)

    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    versions = (
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )
    peak_text = "; ".join(f"{t} threads: {max(p):.0f} GFLOP/s (measured {min(p):.0f}-{max(p):.0f})" for t, p in peaks.items())
    print(f"Run {date}; {versions}; {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads last.")
    print(
        f"{len(conversations)} hh-rlhf harmless-base test conversations ({skipped} unparseable records skipped), "
        f"{real_tokens} real tokens after the chat template (longest {max(lengths)}, mean {real_tokens / len(lengths):.0f}); "
        f"{params / 1e6:.1f} M non-embedding parameters; fp32 matmul peak (best of the run) {peak_text}; "
        f"{args.repeats} interleaved repeats, best time shown."
    )
    print("padding = padded tokens / real tokens - 1; share of peak = 2 x non-embedding params x real tokens / time / peak.\n")
    print(markdown(results))
    if args.json:
        payload = {
            "date": date,
            "versions": versions,
            "rows": len(conversations),
            "skipped_records": skipped,
            "real_tokens": real_tokens,
            "non_embedding_params": params,
            "matmul_peak_gflops": {str(t): p for t, p in peaks.items()},
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
