"""rewardmill on a GPU: an 8B-class reward model (Llama-3.1-8B's shape, random weights, bf16) on real hh-rlhf
conversations and longer synthetic ones, every strategy in one run, in one process.

  rewardmill transformers   the default GPU path: bf16, SDPA, length-sorted padded batches (GPU defaults)
  rewardmill packed (flex)  the same engine with flex attention: padding-free packed batches
  rewardmill packed (flash) flash_attention_2, packed (only when the flash-attn package is installed)
  rewardmill --engine vllm  and raw vLLM pooling on the same token ids (only when vLLM is installed)
  seed loop                 one row per forward (floor)
  distilabel-style          batches of 16 in input order, padded to the longest (floor)

Reported per data set: rows/s, tokens/s, MFU (linear-layer and causal-attention FLOPs of the real tokens
against the GPU's nominal dense bf16 peak, and against a measured 8192^3 bf16 matmul), padding, and the largest
score difference from an fp32 single-row reference on a sample (bf16 against fp32).

A GPU machine reaches no registry or hub, so what it needs is prepared here first, into a git-ignored folder
that travels with the checkout (the Llama-3 tokenizer of the CPU benchmarks and the conversations):

    python benchmarks/bench_gpu.py --prepare                 # here: writes benchmarks/.cache/gpu-kit (~12 MB)
    python benchmarks/bench_gpu.py                           # on the GPU machine (PYTHONPATH=src)
    python benchmarks/bench_gpu.py --tiny --device cpu       # a small shape on CPU, to check the script runs
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
from common import floors  # noqa: E402

KIT = BENCH_DIR / ".cache" / "gpu-kit"
NOMINAL_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}
SYNTHETIC_LENGTHS = (1024, 2048, 4096)


def prepare(rows: int) -> None:
    """Here, with the data and the tokenizer at hand: write the kit the GPU machine reads."""
    from common import build_smol_llama_rm, load_hh_conversations
    from transformers import AutoTokenizer

    KIT.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(build_smol_llama_rm()).save_pretrained(KIT / "tokenizer")
    conversations, _ = load_hh_conversations(rows)
    (KIT / "hh.json").write_text(json.dumps(conversations))
    print(f"wrote {KIT}: the Llama-3 tokenizer and {rows} hh-rlhf conversations", file=sys.stderr)


def llama_8b_config(tokenizer, tiny: bool):
    from transformers import LlamaConfig

    shape = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128)
    if tiny:
        shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=64)
    return LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        num_labels=1, architectures=["LlamaForSequenceClassification"], **shape)


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


def vllm_runners(model, tokenizer, device: str):
    """rewardmill on vLLM and raw vLLM on the same weights (saved once to a temporary folder), started once."""
    if not _VLLM:
        import tempfile

        from vllm import LLM, PoolingParams

        from rewardmill import RewardModel

        folder = Path(tempfile.mkdtemp(prefix="bench-gpu-")) / "model"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        share = 0.25 if device == "cuda" else 0.1  # two engines beside the transformers copy
        settings = {"gpu_memory_utilization": share, "enable_prefix_caching": False}
        on_vllm = RewardModel.from_pretrained(str(folder), engine="vllm", dtype="bfloat16", max_length=8192,
                                              vllm_options=settings)
        llm = LLM(model=str(folder), runner="pooling", dtype="bfloat16", max_model_len=8192, seed=0, **settings)
        params = PoolingParams(use_activation=False)

        def raw(ids: list[list[int]]) -> list[float]:
            outputs = llm.classify([{"prompt_token_ids": x} for x in ids], pooling_params=params, use_tqdm=False)
            return [float(out.outputs.probs[0]) for out in outputs]

        _VLLM.update(on_vllm=on_vllm, raw=raw)
    return _VLLM["on_vllm"], _VLLM["raw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="write the kit here (needs ../shared/data)")
    parser.add_argument("--rows", type=int, default=1024, help="hh-rlhf rows per pass")
    parser.add_argument("--long-rows", type=int, default=64, help="synthetic rows per length (1k, 2k, 4k tokens)")
    parser.add_argument("--seed-rows", type=int, default=128, help="rows of the slow floors (seed loop, distilabel)")
    parser.add_argument("--reference-rows", type=int, default=32, help="rows of the fp32 single-row reference")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a small shape, to check the script (e.g. on CPU)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.prepare:
        prepare(max(args.rows, 2048))
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
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForSequenceClassification(llama_8b_config(tokenizer, args.tiny)).to(torch.bfloat16).eval()
    sync(device)
    print(f"built the model in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    pad = tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    model.config.pad_token_id = pad

    def reward_model(attention: str, packing: bool | None) -> RewardModel:
        model.set_attn_implementation(attention)
        adapter = ClassifierAdapter(model, tokenizer, TextOptions(max_length=8192))
        return RewardModel(adapter, name="llama-3.1-8b-shape (random)", engine_options=EngineOptions(packing=packing))

    data = {"hh-rlhf": hh[: args.rows]}
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
        # fp32 single-row reference on a sample, then back to bf16
        model.float()
        model.set_attn_implementation("sdpa")
        with torch.inference_mode():
            reference = [model(torch.tensor([x], device=device)).logits[0, 0].item() for x in ids[: args.reference_rows]]
        model.to(torch.bfloat16)
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

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "CPU"
    print(f"{name}; torch {torch.__version__}, transformers {transformers.__version__}; measured bf16 matmul "
          f"{peak:.3g} TFLOP/s, nominal {nominal or '-'}; {'tiny shape' if args.tiny else 'Llama-3.1-8B shape'}\n")
    print("| data | strategy | rows | rows/s | tokens/s | MFU (nominal) | share of measured matmul | padding "
          "| vs seed loop | max abs diff bf16 vs fp32 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    seed = {r["data"]: r["tokens_s"] for r in results if r["strategy"].startswith("seed")}
    for r in results:
        mfu = f"{r['mfu_nominal']:.1%}" if r["mfu_nominal"] is not None else "-"
        print(f"| {r['data']} | {r['strategy']} | {r['rows']} | {r['rows_s']:.1f} | {r['tokens_s']:.0f} | {mfu} "
              f"| {r['share_of_matmul']:.1%} | {r['padding']:+.1%} | {r['tokens_s'] / seed[r['data']]:.1f}x "
              f"| {r['bf16_vs_fp32']:.1e} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
