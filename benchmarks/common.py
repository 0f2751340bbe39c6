"""Shared pieces for rewardmill benchmarks: a cached SmolLM2-shaped reward model, real data, a FLOP yardstick.

The model is a `LlamaForSequenceClassification` with SmolLM2-135M's shape and random weights (seeded), paired
with the real Llama-3 tokenizer that llama.cpp ships as a vocabulary-only GGUF file inside the
`llama-cpp-python` sdist. Scores are meaningless; speed and agreement between strategies are what count.
Everything built here is saved under the benchmarks cache directory (git-ignored) so later runs load in
well under a second.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rewardmill.evaluation.layouts import parse_hh_transcript

if TYPE_CHECKING:
    from transformers import LlamaConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is unreachable here; fail fast instead of retrying

Conversation = list[dict[str, str]]

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
HH_FILE = Path("hh-rlhf") / "harmless-base-test.jsonl.gz"

SDIST = "llama-cpp-python==0.3.36"
VOCAB_FILE = "ggml-vocab-llama-bpe.gguf"  # Llama-3's tokenizer (128256 tokens)
MODEL_NAME = "smollm2-135m-shape-llama3-tok-rm-v1"  # bump the suffix when the recipe below changes

# Meta's Llama-3 instruct template, in the form that writes BOS up front.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def fetch_llama3_vocab(cache_dir: Path = CACHE_DIR) -> Path:
    """Path of the Llama-3 vocab GGUF; downloads the llama-cpp-python sdist (77 MB) once to extract it."""
    target = cache_dir / "vocab" / VOCAB_FILE
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        print(f"downloading the {SDIST} sdist to extract {VOCAB_FILE} ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", SDIST, "-d", download],
            check=True,
        )
        (archive,) = Path(download).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(f"/vendor/llama.cpp/models/{VOCAB_FILE}"))
            source = tar.extractfile(member)
            assert source is not None
            partial = target.with_suffix(".part")
            partial.write_bytes(source.read())
            partial.rename(target)
    return target


def smol_llama_config(tokenizer) -> LlamaConfig:
    """SmolLM2-135M's shape (106 M non-embedding parameters) with Llama-3's vocabulary and special tokens."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        initializer_range=0.041666666666666664,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=1,
        architectures=["LlamaForSequenceClassification"],
    )


def llama_8b_config(tokenizer, tiny: bool = False, layers: int | None = None) -> LlamaConfig:
    """Llama-3.1-8B's shape (hidden 4096, 32 heads, 8 KV heads) with Llama-3's vocabulary, as a one-label
    classifier; `layers` keeps the first few layers only (per token, every layer costs the same), `tiny` a small
    shape to check a script with."""
    from transformers import LlamaConfig

    shape = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128)
    if tiny:
        shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=64)
    if layers is not None:
        shape["num_hidden_layers"] = layers
    return LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        num_labels=1, architectures=["LlamaForSequenceClassification"], **shape)


# The CPU benchmark models: name -> (cache folder, config builder). fp32, random weights (seed 0).
SHAPES = {
    "smollm2-135m": (MODEL_NAME, smol_llama_config),
    "llama-8b-2l": ("llama-8b-shape-2-layers-llama3-tok-rm-v1", lambda tokenizer: llama_8b_config(tokenizer, layers=2)),
}
# Shapes cut to a few of a deeper model's layers (llama-8b-2l: 2 of 32). rewardmill's last-layer saving
# (`unpadded.read_rows_only`, most of one layer) would count many times over there, so benchmarks turn it off.
CUT_SHAPES = {"llama-8b-2l"}


def build_llama_rm(shape: str = "smollm2-135m", cache_dir: Path = CACHE_DIR) -> Path:
    """Directory of a cached benchmark reward model of `shape` (a key of SHAPES: model + tokenizer with chat
    template); builds it once."""
    name, config = SHAPES[shape]
    out = cache_dir / name
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    vocab = fetch_llama3_vocab(cache_dir)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(vocab.parent, gguf_file=vocab.name)  # ~20 s
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config(tokenizer)).to(torch.float32).eval()
    partial = cache_dir / f"{name}.part"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"built {out} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


def build_smol_llama_rm(cache_dir: Path = CACHE_DIR) -> Path:
    """Directory of the cached SmolLM2-135M-shaped benchmark reward model; builds it once."""
    return build_llama_rm("smollm2-135m", cache_dir)


def load_hh_conversations(n: int, data_dir: Path = DATA_DIR) -> tuple[list[Conversation], int]:
    """The first n cleanly parsed "chosen" conversations of hh-rlhf harmless-base test, and how many were skipped."""
    conversations: list[Conversation] = []
    skipped = 0
    with gzip.open(Path(data_dir) / HH_FILE, "rt", encoding="utf-8") as lines:
        for line in lines:
            if len(conversations) == n:
                break
            conversation = parse_hh_transcript(json.loads(line)["chosen"])
            if conversation is None:
                skipped += 1
            else:
                conversations.append(conversation)
    if len(conversations) < n:
        raise ValueError(f"only {len(conversations)} usable conversations in {HH_FILE}, {n} asked for")
    return conversations, skipped


def matmul_peak_gflops(threads: int, size: int = 2048, repeats: int = 12) -> float:
    """Best fp32 GFLOP/s of a size x size matmul at the given thread count (the 'peak' yardstick).

    Best of torch's default kernel (MKL) and oneDNN: on AMD EPYC, MKL runs an AVX2 path at about half of what
    oneDNN's AVX-512 reaches, so MKL alone would understate the machine. Best of many runs: on this VM a
    2-thread matmul is sometimes half as fast as the next one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)
        b = torch.randn(size, size, generator=generator)
        kernels = [lambda: torch.mm(a, b)]
        if torch.backends.mkldnn.is_available():
            kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
        best = float("inf")
        with torch.inference_mode():
            for kernel in kernels:
                for _ in range(2):  # warm-up: thread pool and allocator
                    kernel()
                for _ in range(repeats):
                    started = time.perf_counter()
                    kernel()
                    best = min(best, time.perf_counter() - started)
        return 2 * size**3 / best / 1e9
    finally:
        torch.set_num_threads(previous)


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters that do compute per token: all but the embedding tables (a lookup is not a matmul)."""
    embedded = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedded)


def floors(model, ids: list[list[int]], pad_id: int, device: str = "cpu"):
    """The reference strategies: the seed loop (one row per forward, no padding) and distilabel-style batching
    (16 rows in input order, padded to the longest). Each returns the first logit of every row."""

    @torch.inference_mode()
    def seed_loop() -> list[float]:
        return [model(torch.tensor([x], device=device)).logits[0, 0].float().item() for x in ids]

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
            out = model(input_ids=batch.to(device), attention_mask=mask.to(device)).logits[:, 0]
            scores.extend(out.float().tolist())
        return scores

    return seed_loop, distilabel


def load_hh_pairs(n: int, data_dir: Path = DATA_DIR) -> list[tuple[Conversation, str, str]]:
    """The first n hh-rlhf harmless-base test records whose two transcripts parse cleanly and differ only in the
    last assistant turn: (the shared conversation up to the last user turn, chosen answer, rejected answer)."""
    pairs: list[tuple[Conversation, str, str]] = []
    with gzip.open(Path(data_dir) / HH_FILE, "rt", encoding="utf-8") as lines:
        for line in lines:
            if len(pairs) == n:
                break
            record = json.loads(line)
            chosen, rejected = parse_hh_transcript(record["chosen"]), parse_hh_transcript(record["rejected"])
            if chosen and rejected and chosen[:-1] == rejected[:-1] and chosen[-1]["role"] == "assistant":
                pairs.append((chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]))
    if len(pairs) < n:
        raise ValueError(f"only {len(pairs)} usable pairs in {HH_FILE}, {n} asked for")
    return pairs


LLMBAR_SETS = ("llmbar/Natural/dataset.json", "llmbar/Adversarial/Neighbor/dataset.json")


def load_llmbar_fours(n: int, data_dir: Path = DATA_DIR) -> list[tuple[str, list[str]]]:
    """n LLMBar instructions (Natural, then Adversarial/Neighbor), each with four responses: its own output_1 and
    output_2, then output_1 and output_2 of the next item of the same set. No instruction of LLMBar has four
    answers; the borrowed two stand in for two more samples (for speed only their length matters)."""
    fours: list[tuple[str, list[str]]] = []
    for name in LLMBAR_SETS:
        items = json.loads((Path(data_dir) / name).read_text(encoding="utf-8"))
        for item, neighbour in zip(items, items[1:] + items[:1]):
            fours.append((item["input"], [item["output_1"], item["output_2"],
                                          neighbour["output_1"], neighbour["output_2"]]))
    if len(fours) < n:
        raise ValueError(f"only {len(fours)} LLMBar instructions, {n} asked for")
    return fours[:n]
