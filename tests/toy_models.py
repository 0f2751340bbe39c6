"""Small local reward models with real architectures and real tokenizer classes, built in a directory.

Weights are random (seeded), vocabularies are tiny (characters plus byte fallback), chat templates are
the real ones of each family. Scores mean nothing; they serve batch-invariance and plumbing checks.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_CHARS = list(dict.fromkeys(string.ascii_letters + string.digits + string.punctuation + " \n\u2581"))


def _spm_vocab(specials: list[str]) -> dict[str, int]:
    """SentencePiece-style vocabulary: special tokens, the 256 byte-fallback pieces, then characters."""
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)] + _CHARS
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def _byte_level_vocab(specials: list[str]) -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values()) + specials
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def llama_tokenizer():
    """Llama-3 style: no pad token, the tokenizer adds BOS and the template writes it too (double-BOS trap)."""
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    tok = LlamaTokenizer(
        vocab=_spm_vocab(specials), merges=[], bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        unk_token="<unk>", add_bos_token=True, extra_special_tokens=["<|start_header_id|>", "<|end_header_id|>"],
    )
    tok.pad_token = None
    tok.padding_side = "right"
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def qwen2_tokenizer():
    """Qwen2 style: byte-level BPE, ChatML template, pad <|endoftext|>, no BOS, right padding."""
    from transformers import Qwen2Tokenizer

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Qwen2Tokenizer(
        vocab=_byte_level_vocab(specials), merges=[], unk_token=None, bos_token=None,
        eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.padding_side = "right"
    tok.chat_template = CHATML_TEMPLATE
    return tok


def gemma_tokenizer():
    """Gemma style: pad <pad> != eos, left padding, tokenizer adds BOS and the template writes it too."""
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tok = GemmaTokenizer(
        vocab=_spm_vocab(specials), merges=[], pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>", add_bos_token=True,
    )
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.padding_side = "left"
    tok.chat_template = GEMMA_TEMPLATE
    return tok


def bert_tokenizer(directory: Path):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase + string.digits + string.punctuation)
    words += ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab_file = directory / "vocab.txt"
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    return BertTokenizer(vocab_file=str(vocab_file))


def _decoder_config(family: str, tok, head_dim: int = 16, num_labels: int = 1):
    from transformers import Gemma3TextConfig, GemmaConfig, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(
        vocab_size=len(tok), hidden_size=4 * head_dim, intermediate_size=8 * head_dim, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim, max_position_embeddings=2048,
        num_labels=num_labels,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    if family == "llama":
        return LlamaConfig(**common, architectures=["LlamaForSequenceClassification"])
    if family == "qwen2":
        return Qwen2Config(**common, architectures=["Qwen2ForSequenceClassification"])
    if family == "gemma1":  # Gemma (1): full attention everywhere
        return GemmaConfig(**common, architectures=["GemmaForSequenceClassification"])
    if family == "mistral":
        return MistralConfig(**common, sliding_window=None, architectures=["MistralForSequenceClassification"])
    return Gemma3TextConfig(
        **common, sliding_window=24, layer_types=["sliding_attention", "full_attention"],
        architectures=["Gemma3TextForSequenceClassification"],
    )


TOKENIZERS = {"llama": llama_tokenizer, "qwen2": qwen2_tokenizer, "gemma": gemma_tokenizer,
              "gemma1": gemma_tokenizer, "mistral": llama_tokenizer}


def build_decoder_rm(family: str, directory: Path, seed: int = 0, head_dim: int = 16, num_labels: int = 1) -> Path:
    """Save a random `<Family>ForSequenceClassification` reward model and its tokenizer to `directory`.
    (vLLM's CPU attention takes head_dim 32 and up.)"""
    from transformers import AutoModelForSequenceClassification

    tok = TOKENIZERS[family]()
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(_decoder_config(family, tok, head_dim, num_labels))
    with torch.no_grad():  # a visible head, so scores spread out
        model.score.weight.normal_(0, 1.0)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def build_bert_rm(directory: Path, seed: int = 0) -> Path:
    """Save a random BertForSequenceClassification regression model (one label) and its tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = bert_tokenizer(directory)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=256, num_labels=1, problem_type="regression",
        architectures=["BertForSequenceClassification"],
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def gpt2_config(tok, **extra):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=4096, n_inner=128,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False, **extra,
    )


def build_gpt2_rm(directory: Path, seed: int = 0) -> Path:
    """A random GPT2ForSequenceClassification (absolute learned positions) with a ChatML byte-level tokenizer."""
    from transformers import GPT2ForSequenceClassification

    tok = qwen2_tokenizer()
    torch.manual_seed(seed)
    model = GPT2ForSequenceClassification(gpt2_config(tok, num_labels=1, architectures=["GPT2ForSequenceClassification"]))
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
        model.transformer.wpe.weight.normal_(0, 1.0)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def build_pad_is_eos_rm(family: str, directory: Path, seed: int = 0, head_dim: int = 16) -> Path:
    """A decoder reward model set up as TRL leaves one trained with `pad_token = eos_token` (Llama-3 and Mistral
    reward models): the tokenizer's pad token and the config's pad_token_id are the EOS that closes each turn."""
    from transformers import AutoModelForSequenceClassification

    tok = TOKENIZERS[family]()
    tok.pad_token = tok.eos_token
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(_decoder_config(family, tok, head_dim))
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    assert model.config.pad_token_id == tok.eos_token_id
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def build_llama_generator(directory: Path, seed: int = 4) -> Path:
    """A random Llama causal LM with the toy Llama-3 tokenizer, for local judges: it writes whatever its weights
    say (seed 4: greedy answers that run past a few tokens). The process's RNG is left as it was."""
    from transformers import LlamaForCausalLM

    tok = llama_tokenizer()
    config = _decoder_config("llama", tok)
    config.architectures = ["LlamaForCausalLM"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
