"""rewardmill on a GPU: an 8B-class reward model (Llama-3.1-8B's shape, random weights, bf16) on real hh-rlhf
conversations, longer synthetic ones, and the grouped workloads of issue 30, every strategy in one run, in one
process.

Unique rows (--workloads hh-rlhf synthetic):
  rewardmill transformers   the default GPU path: bf16, SDPA, length-sorted padded batches (GPU defaults)
  rewardmill packed (flex)  the same engine with flex attention: padding-free packed batches
  rewardmill packed (flash) flash_attention_2, packed (only when the flash-attn package is installed)
  rewardmill --engine vllm  and raw vLLM pooling on the same token ids (only when vLLM is installed)
  seed loop                 one row per forward (floor)
  distilabel-style          batches of 16 in input order, padded to the longest (floor)
Reported per data set: rows/s, tokens/s, MFU (linear-layer and causal-attention FLOPs of the real tokens
against the GPU's nominal dense bf16 peak, and against a measured 8192^3 bf16 matmul), padding, and the largest
score difference from an fp32 single-row reference on a sample (bf16 against fp32).

Grouped rows (--workloads pairs gen4; messages + generations rows, scored with `score_rows`, as in
bench_vs_vllm.py): `pairs`, hh-rlhf pairs (the shared conversation; chosen and rejected as two generations), and
`gen4`, LLMBar instructions x 4 generations. On each, interleaved and repeated, best shown:
  rewardmill, prefix sharing    flex attention (a BlockMask built from the groups) and SDPA (a dense bool mask)
  rewardmill, no sharing        SDPA padded, and flex attention packed
  rewardmill, flash_attention_2 packed, prefix sharing off (it takes no block mask: forcing prefix_sharing=True
                                raises OptionsError, which the run checks; the default turns sharing off)
  raw vLLM pooling              on the same token ids (a prompt's rows adjacent), enable_prefix_caching True and
                                False, `reset_prefix_cache()` before each pass, untimed (only when vLLM is installed)
Reported per workload: tokens/s counting every row's full length, the shared-token fraction (rewardmill's groups,
each row's prefix shared with an earlier row, and that in whole vLLM blocks), the ratio to raw vLLM with prefix
caching on and to rewardmill without sharing, and max score differences (against no sharing, raw vLLM without its
cache, and the fp32 single-row reference).

A GPU machine reaches no registry or hub, so what it needs is prepared here first, into a git-ignored folder
that travels with the checkout (the Llama-3 tokenizer of the CPU benchmarks, the hh-rlhf conversations, and the
pairs and gen4 rows, read from ../shared/data):

    PYTHONPATH=src python benchmarks/bench_gpu.py --prepare  # here: writes benchmarks/.cache/gpu-kit (~20 MB)
    PYTHONPATH=src python benchmarks/bench_gpu.py --tiny --device cpu   # here: a small shape, to check (3 min)

then on the GPU machine, with benchmarks/.cache/gpu-kit carried along (it is git-ignored):

    PYTHONPATH=src python3 benchmarks/bench_gpu.py --workloads pairs gen4 --json grouped.json   # issue 30
    PYTHONPATH=src python3 benchmarks/bench_gpu.py --workloads hh-rlhf synthetic                # unique rows

The grouped run computes about 280k tokens per pass (1024 + 936 scores). vLLM is not in the GPU machine's image
(its wheels are larger than what travels), so its rows appear only where it is installed; each vLLM engine
claims --vllm-share of the GPU (0.25: two on an 80 GB card beside the transformers copy for the grouped run; the
unique run starts a third, so run the two separately or lower --vllm-share there).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from common import DATA_DIR, floors, llama_8b_config  # noqa: E402

KIT = BENCH_DIR / ".cache" / "gpu-kit"
NOMINAL_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}
SYNTHETIC_LENGTHS = (1024, 2048, 4096)


def prepare(rows: int, pairs: int, prompts: int) -> None:
    """Here, with the data and the tokenizer at hand: write the kit the GPU machine reads."""
    from common import build_smol_llama_rm, load_hh_conversations
    from transformers import AutoTokenizer
    from workloads import fours_workload, pairs_workload

    KIT.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(build_smol_llama_rm()).save_pretrained(KIT / "tokenizer")
    conversations, _ = load_hh_conversations(rows)
    (KIT / "hh.json").write_text(json.dumps(conversations))
    for name, workload in (("pairs", pairs_workload(pairs, DATA_DIR)), ("gen4", fours_workload(prompts, DATA_DIR))):
        (KIT / f"{name}.json").write_text(json.dumps(workload.inputs))  # messages + generations rows
    print(f"wrote {KIT}: the Llama-3 tokenizer, {rows} hh-rlhf conversations, {pairs} hh-rlhf pairs and {prompts} "
          "LLMBar instructions x 4 generations", file=sys.stderr)


def grouped_workload(name: str, count: int):
    """A grouped workload of the kit (messages + generations rows), its first `count` prompts."""
    from workloads import generation_rows

    path = KIT / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python benchmarks/bench_gpu.py --prepare` here first")
    rows = json.loads(path.read_text())
    if len(rows) < count:
        raise SystemExit(f"{path} holds {len(rows)} prompts, {count} asked for (--prepare with more)")
    descriptions = {"pairs": f"{count} hh-rlhf pairs as messages + generations rows",
                    "gen4": f"{count} LLMBar instructions x 4 generations"}
    return generation_rows([(r["messages"], r["generations"]) for r in rows[:count]], name, descriptions[name])


def rendered_tokens(tokenizer, conversation: list) -> int:
    return len(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])


def synthetic(conversations: list, target_tokens: int, count: int, tokenizer) -> list:
    """Long conversations made of real hh-rlhf turns, each grown until its rendering reaches the target."""
    out = []
    source = iter(conversations * 100)
    for _ in range(count):
        conversation: list = []
        # whole conversations chained: each ends with an assistant turn and the next starts with a user turn
        while not conversation or rendered_tokens(tokenizer, conversation) < target_tokens:
            conversation.extend(next(source))
        out.append(conversation)
    return out


def flops_per_pass(model, lengths: list[int]) -> float:
    """Linear layers (2 x non-embedding parameters per token) plus causal attention (2 x layers x hidden x L^2
    per sequence: QK^T and AV, halved by the causal mask)."""
    config = model.config
    embedded = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    linear = sum(p.numel() for p in model.parameters() if id(p) not in embedded)
    attention = sum(2 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * n * n for n in lengths)
    return 2 * linear * sum(lengths) + attention


def measured_peak_tflops(device: str) -> float:
    size = 8192 if device == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * size**3 / (time.perf_counter() - started) / 1e12


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


_VLLM: dict = {}
VLLM_SHARE = {"cuda": 0.25, "cpu": 0.1}  # of the device's memory, per vLLM engine (each holds a copy of the weights)


def vllm_folder(model, tokenizer) -> Path:
    """The weights saved once to a temporary folder, for the vLLM engines to load."""
    if "folder" not in _VLLM:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="bench-gpu-")) / "model"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        _VLLM["folder"] = folder
    return _VLLM["folder"]


def vllm_runners(model, tokenizer, device: str):
    """rewardmill on vLLM and raw vLLM (prefix caching off) on the same weights, started once."""
    from rewardmill import RewardModel

    if "on_vllm" not in _VLLM:
        folder = vllm_folder(model, tokenizer)
        settings = {"gpu_memory_utilization": VLLM_SHARE[device], "enable_prefix_caching": False}
        release(device)
        _VLLM["on_vllm"] = RewardModel.from_pretrained(str(folder), engine="vllm", dtype="bfloat16", max_length=8192,
                                                       vllm_options=settings)
    return _VLLM["on_vllm"], raw_vllm(model, tokenizer, device, caching=False)


class RawVllm:
    """vLLM's pooling runner on token ids, raw logits; `reset` empties its prefix cache (a repeated pass would
    otherwise be served from it)."""

    def __init__(self, folder: Path, device: str, caching: bool):
        from vllm import LLM, PoolingParams

        self.llm = LLM(model=str(folder), runner="pooling", dtype="bfloat16", max_model_len=8192, seed=0,
                       gpu_memory_utilization=VLLM_SHARE[device], enable_prefix_caching=caching)
        self.params = PoolingParams(use_activation=False)
        self.caching = caching

    def __call__(self, ids: list[list[int]]) -> list[float]:
        outputs = self.llm.classify([{"prompt_token_ids": x} for x in ids], pooling_params=self.params, use_tqdm=False)
        return [float(out.outputs.probs[0]) for out in outputs]

    def reset(self) -> None:
        if self.caching:
            self.llm.reset_prefix_cache()


def raw_vllm(model, tokenizer, device: str, caching: bool) -> RawVllm:
    key = f"raw_{'cached' if caching else 'uncached'}"
    if key not in _VLLM:
        folder = vllm_folder(model, tokenizer)
        release(device)
        _VLLM[key] = RawVllm(folder, device, caching)
    return _VLLM[key]


def release(device: str) -> None:
    """Hand torch's cached blocks back to the device before an engine outside torch's allocator claims its share."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


TINY_SIZES = {"rows": 48, "long_rows": 2, "seed_rows": 8, "reference_rows": 8, "pairs": 16, "prompts": 8}
FULL_SIZES = {"rows": 1024, "long_rows": 64, "seed_rows": 128, "reference_rows": 32, "pairs": 512, "prompts": 234}
GPU_BLOCK = 16  # vLLM's KV cache block on a GPU (when its engine does not say)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="write the kit here (needs ../shared/data)")
    parser.add_argument("--workloads", nargs="+", choices=["hh-rlhf", "synthetic", "pairs", "gen4"],
                        default=["hh-rlhf", "synthetic", "pairs", "gen4"])
    parser.add_argument("--rows", type=int, help="hh-rlhf rows per pass (1024; --tiny 48)")
    parser.add_argument("--long-rows", type=int, help="synthetic rows per length (1k, 2k, 4k tokens) (64; --tiny 2)")
    parser.add_argument("--pairs", type=int, help="hh-rlhf pairs of the pairs workload (512; --tiny 16)")
    parser.add_argument("--prompts", type=int, help="LLMBar instructions x 4 generations of gen4 (234; --tiny 8)")
    parser.add_argument("--seed-rows", type=int, help="rows of the slow floors (seed loop, distilabel) (128; --tiny 8)")
    parser.add_argument("--reference-rows", type=int, help="rows of the fp32 single-row reference (32; --tiny 8)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a small shape and sizes, to check the script")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--vllm-share", type=float, help="device memory per vLLM engine (cuda 0.25, cpu 0.1)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for key, value in (TINY_SIZES if args.tiny else FULL_SIZES).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.vllm_share:
        VLLM_SHARE[args.device] = args.vllm_share
    if args.prepare:
        prepare(max(args.rows, 2048), max(args.pairs, 1024), FULL_SIZES["prompts"])
        return

    import transformers
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    from rewardmill import RewardModel
    from rewardmill.reward_models.adapters.classifier import ClassifierAdapter
    from rewardmill.reward_models.engines.transformers_engine import plan_batches
    from rewardmill.reward_models.options import EngineOptions, TextOptions

    device = args.device
    tokenizer = AutoTokenizer.from_pretrained(KIT / "tokenizer")
    hh = json.loads((KIT / "hh.json").read_text())
    grouped = {name: grouped_workload(name, args.pairs if name == "pairs" else args.prompts)
               for name in ("pairs", "gen4") if name in args.workloads}
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForSequenceClassification(llama_8b_config(tokenizer, args.tiny)).to(torch.bfloat16).eval()
    sync(device)
    print(f"built the model in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    pad = tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    model.config.pad_token_id = pad

    def reward_model(attention: str, packing: bool | None, prefix_sharing: bool | None = None) -> RewardModel:
        model.set_attn_implementation(attention)
        adapter = ClassifierAdapter(model, tokenizer, TextOptions(max_length=8192))
        options = EngineOptions(packing=packing, prefix_sharing=prefix_sharing)
        return RewardModel(adapter, name="llama-3.1-8b-shape (random)", engine_options=options)

    data = {"hh-rlhf": hh[: args.rows]} if "hh-rlhf" in args.workloads else {}
    if "synthetic" in args.workloads:
        for length in SYNTHETIC_LENGTHS:
            data[f"synthetic ~{length // 1024}k"] = synthetic(hh, length, args.long_rows, tokenizer)
    attentions = [("sdpa", None, "rewardmill transformers (SDPA, padded)")]
    attentions.append(("flex_attention", True, "rewardmill packed (flex attention)"))
    try:
        import flash_attn  # noqa: F401

        attentions.append(("flash_attention_2", True, "rewardmill packed (flash_attention_2)"))
    except ImportError:
        print("flash-attn is not installed: its row is left out", file=sys.stderr)
    try:
        import vllm  # noqa: F401
    except ImportError:
        vllm = None
        print("vLLM is not installed: its rows are left out", file=sys.stderr)

    nominal = next((v for k, v in NOMINAL_BF16_TFLOPS.items() if device == "cuda" and k in torch.cuda.get_device_name()), None)
    peak = measured_peak_tflops(device)
    results = []
    for data_name, conversations in data.items():
        encoder = reward_model("sdpa", None)
        ids = [encoder.adapter.encode(c).input_ids for c in conversations]
        lengths = [len(x) for x in ids]
        flops = flops_per_pass(model, lengths)
        runners = {}
        for attention, packing, label in attentions:
            def run(attention=attention, packing=packing):
                rm = reward_model(attention, packing)
                scores = rm.score(conversations)
                sync(device)
                return scores, rm.engine
            runners[label] = run
        if vllm is not None:
            on_vllm, raw = vllm_runners(model, tokenizer, device)
            runners["rewardmill --engine vllm"] = lambda: (on_vllm.score(conversations), None)
            runners["vLLM pooling (raw, same token ids)"] = lambda: (raw(ids), None)
        seed_ids = ids[: args.seed_rows]
        seed_loop, distilabel = floors(model, seed_ids, pad, device)
        runners["seed loop (1 row/forward)"] = lambda: (seed_loop(), None)
        runners["distilabel-style (16/batch, input order)"] = lambda: (distilabel(), None)
        model.set_attn_implementation("sdpa")
        timings: dict[str, list[float]] = {}
        scores: dict[str, list[float]] = {}
        engines = {}
        for name, run in runners.items():  # warm-up (kernels, flex compilation)
            run()
        for repeat in range(args.repeats):
            for name, run in runners.items():
                gc.collect()
                sync(device)
                begin = time.perf_counter()
                scores[name], engines[name] = run()
                timings.setdefault(name, []).append(time.perf_counter() - begin)
        reference = fp32_reference(model, ids[: args.reference_rows], device)
        for name, times in timings.items():
            best = min(times)
            rows = len(scores[name])
            part = flops if rows == len(ids) else flops_per_pass(model, lengths[:rows])
            engine = engines[name]
            if engine is not None and not getattr(engine, "packing", True):
                plan = plan_batches(lengths, engine.options)
                waste = sum(len(b) * max(lengths[i] for i in b) for b in plan) / sum(lengths) - 1
            elif name.startswith("distilabel"):
                chunks = [lengths[i : i + 16] for i in range(0, rows, 16)]
                waste = sum(len(c) * max(c) for c in chunks) / sum(lengths[:rows]) - 1
            else:
                waste = 0.0
            diff = max(abs(a - b) for a, b in zip(scores[name], reference))
            results.append({"data": data_name, "strategy": name, "rows": rows, "tokens": sum(lengths[:rows]),
                            "seconds": best, "rows_s": rows / best, "tokens_s": sum(lengths[:rows]) / best,
                            "mfu_nominal": part / best / 1e12 / nominal if nominal else None,
                            "share_of_matmul": part / best / 1e12 / peak, "padding": waste, "bf16_vs_fp32": diff})

    grouped_results = {name: measure_grouped(workload, reward_model, model, tokenizer, device, args, vllm is not None)
                       for name, workload in grouped.items()}

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "CPU"
    print(f"{name}; torch {torch.__version__}, transformers {transformers.__version__}; measured bf16 matmul "
          f"{peak:.3g} TFLOP/s, nominal {nominal or '-'}; {'tiny shape' if args.tiny else 'Llama-3.1-8B shape'}\n")
    if results:
        print("| data | strategy | rows | rows/s | tokens/s | MFU (nominal) | share of measured matmul | padding "
              "| vs seed loop | max abs diff bf16 vs fp32 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    seed = {r["data"]: r["tokens_s"] for r in results if r["strategy"].startswith("seed")}
    for r in results:
        mfu = f"{r['mfu_nominal']:.1%}" if r["mfu_nominal"] is not None else "-"
        print(f"| {r['data']} | {r['strategy']} | {r['rows']} | {r['rows_s']:.1f} | {r['tokens_s']:.0f} | {mfu} "
              f"| {r['share_of_matmul']:.1%} | {r['padding']:+.1%} | {r['tokens_s'] / seed[r['data']]:.1f}x "
              f"| {r['bf16_vs_fp32']:.1e} |")
    if grouped_results:
        print_grouped(grouped, grouped_results, args.repeats)
    if args.json:
        args.json.write_text(json.dumps({"unique": results, "grouped": grouped_results}, indent=2))

def fp32_reference(model, ids: list[list[int]], device: str) -> list[float]:
    """One row per forward in fp32 with SDPA, then the model back to bf16 (a lossless round trip)."""
    model.float()
    model.set_attn_implementation("sdpa")
    with torch.inference_mode():
        reference = [model(torch.tensor([x], device=device)).logits[0, 0].item() for x in ids]
    model.to(torch.bfloat16)
    return reference


SHARED_FLEX = "rewardmill, prefix sharing (flex attention, BlockMask from the groups)"
SHARED_SDPA = "rewardmill, prefix sharing (SDPA, dense bool mask)"
UNSHARED_SDPA = "rewardmill --no-prefix-sharing (SDPA, padded)"
UNSHARED_FLEX = "rewardmill --no-prefix-sharing (flex attention, packed)"
FLASH = "rewardmill (flash_attention_2, packed; prefix sharing off: no block mask)"
RAW_CACHED = "vLLM pooling (raw), prefix caching on"
RAW_UNCACHED = "vLLM pooling (raw), prefix caching off"
GROUPED_STRATEGIES = (  # label, attention, packing, prefix_sharing
    (SHARED_FLEX, "flex_attention", None, True),
    (SHARED_SDPA, "sdpa", None, True),
    (UNSHARED_SDPA, "sdpa", None, False),
    (UNSHARED_FLEX, "flex_attention", True, False),
)


def flash_installed() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def measure_grouped(workload, reward_model, model, tokenizer, device: str, args, with_vllm: bool) -> dict:
    """One grouped workload (messages + generations rows): rewardmill with prefix sharing on and off, raw vLLM with
    prefix caching on and off on the same token ids (a prompt's rows adjacent), interleaved and repeated."""
    from workloads import block_reuse_share, earlier_row_share, grouped_share

    from rewardmill import score_rows
    from rewardmill.errors import OptionsError

    sharing = reward_model("sdpa", None, True)
    encoded = [sharing.adapter.encode(c) for c in workload.conversations]
    ids = [item.input_ids for item in encoded]
    shares = {"grouped": grouped_share(sharing.engine, encoded), "earlier_row": earlier_row_share(ids)}
    strategies = list(GROUPED_STRATEGIES)
    if flash_installed():
        try:  # said once in the output: flash attention takes no block mask, so forcing sharing is refused
            reward_model("flash_attention_2", True, True)
        except OptionsError as error:
            print(f"{workload.name}: flash_attention_2 with prefix_sharing=True refused as expected: {error}",
                  file=sys.stderr)
        strategies.append((FLASH, "flash_attention_2", True, None))  # None: sharing turns itself off

    runners: dict = {}  # label: (untimed preparation or None, timed pass returning the scores)
    engines = {}
    for label, attention, packing, prefix_sharing in strategies:
        def run(attention=attention, packing=packing, prefix_sharing=prefix_sharing, label=label):
            rm = reward_model(attention, packing, prefix_sharing)
            engines[label] = rm.engine
            scores = [s for row in score_rows(rm, workload.inputs) for s in row["ratings"]]
            sync(device)
            return scores
        runners[label] = (None, run)
    if with_vllm:
        for label, caching in ((RAW_CACHED, True), (RAW_UNCACHED, False)):
            raw = raw_vllm(model, tokenizer, device, caching)
            runners[label] = (raw.reset, lambda raw=raw: raw(ids))
        cache_config = getattr(getattr(_VLLM["raw_cached"].llm.llm_engine, "vllm_config", None), "cache_config", None)
        block = getattr(cache_config, "block_size", None) or GPU_BLOCK
    else:
        block = GPU_BLOCK
    shares["vllm_blocks"] = block_reuse_share(ids, block)
    timings: dict[str, list[float]] = {}
    scores: dict[str, list[float]] = {}
    for label, (prepare_pass, run) in runners.items():  # warm-up (kernels, flex compilation)
        if prepare_pass:
            prepare_pass()
        run()
    for _ in range(args.repeats):
        for label, (prepare_pass, run) in runners.items():
            if prepare_pass:
                prepare_pass()  # untimed: an emptied prefix cache, else a repeated pass is served from it
            gc.collect()
            sync(device)
            begin = time.perf_counter()
            scores[label] = run()
            timings.setdefault(label, []).append(time.perf_counter() - begin)
    model.set_attn_implementation("sdpa")
    reference = fp32_reference(model, ids[: args.reference_rows], device)
    total = sum(map(len, ids))
    rows = {}
    for label, times in timings.items():
        engine = engines.get(label)
        rows[label] = {"seconds": times, "rows_s": len(ids) / min(times), "tokens_s": total / min(times),
                       "prefix_sharing": getattr(engine, "prefix_sharing", None),
                       "bf16_vs_fp32": max(abs(a - b) for a, b in zip(scores[label], reference)),
                       "vs_unshared_sdpa": max_diff(scores[label], scores.get(UNSHARED_SDPA)),
                       "vs_raw_uncached": max_diff(scores[label], scores.get(RAW_UNCACHED))}
    return {"scores": len(ids), "tokens": total, "block": block, "shared": shares, "strategies": rows}


def max_diff(a: list[float] | None, b: list[float] | None) -> float | None:
    return max(abs(x - y) for x, y in zip(a, b)) if a and b else None


def print_grouped(workloads: dict, results: dict, repeats: int) -> None:
    print(f"\n### Grouped workloads: prefix sharing against vLLM's prefix cache ({repeats} interleaved repeats, best "
          "shown; vLLM's cache emptied before each pass, untimed)\n")
    for name, result in results.items():
        shares = result["shared"]
        print(f"**{name}**: {workloads[name].description}; {result['scores']} scores, {result['tokens']} tokens "
              f"(every row's full length). Shared: {shares['grouped']:.1%} with rewardmill's groups (1 - computed / "
              f"total tokens), {shares['earlier_row']:.1%} as each row's prefix shared with an earlier row, "
              f"{shares['vllm_blocks']:.1%} of it in whole {result['block']}-token blocks (what vLLM's cache can "
              "reuse).\n")
    print("| data | strategy | engine shared | rows/s | tokens/s | vs raw vLLM, prefix caching on "
          "| vs --no-prefix-sharing (SDPA) "
          "| max abs diff vs --no-prefix-sharing (SDPA) | max abs diff vs raw vLLM (no cache) "
          "| max abs diff bf16 vs fp32 | seconds (all) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, result in results.items():
        strategies = result["strategies"]
        cached = strategies.get(RAW_CACHED)
        unshared = strategies.get(UNSHARED_SDPA)
        for label, r in strategies.items():
            shared = {True: "yes", False: "no", None: "-"}[r["prefix_sharing"]]  # as the engine resolved it
            print(f"| {name} | {label} | {shared} | {r['rows_s']:.1f} | {r['tokens_s']:.0f} "
                  f"| {ratio(r, cached)} | {ratio(r, unshared)} | {number(r['vs_unshared_sdpa'])} "
                  f"| {number(r['vs_raw_uncached'])} | {r['bf16_vs_fp32']:.1e} "
                  f"| {', '.join(f'{t:.2f}' for t in r['seconds'])} |")


def ratio(row: dict, baseline: dict | None) -> str:
    return f"{row['tokens_s'] / baseline['tokens_s']:.2f}x" if baseline else "-"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


if __name__ == "__main__":
    main()
