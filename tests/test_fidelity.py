"""Batched scores must equal an independent single-row fp32 reference, whatever the batching.

The reference is computed here, not by rewardmill: HF's own `apply_chat_template(tokenize=True)` ids (or
`tokenizer(prompt, response)` for pair models), one row, no padding, `model(ids).logits[0, 0]`.
"""

import random

import pytest
import torch
from sample_data import conversations
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardmill import RewardModel

TOLERANCE = 1e-5
CONVS = conversations(24)


def decoder_reference(directory, convs) -> list[float]:
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    scores = []
    with torch.no_grad():
        for conv in convs:
            ids = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
            if tok.bos_token_id is not None:
                assert ids.count(tok.bos_token_id) == 1, "reference must hold exactly one BOS"
            scores.append(model(torch.tensor([ids])).logits[0, 0].item())
    return scores


def pair_reference(directory, convs) -> list[float]:
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    scores = []
    with torch.no_grad():
        for conv in convs:
            *context, answer = conv
            if len(context) == 1:
                prompt = context[0]["content"]
            else:
                prompt = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in context)
            enc = tok(prompt, answer["content"], return_tensors="pt")
            scores.append(model(**enc).logits[0, 0].item())
    return scores


def assert_close(got, want):
    assert len(got) == len(want)
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= TOLERANCE, f"max difference {worst:.2e} > {TOLERANCE}"


@pytest.fixture(scope="module")
def references(model_dirs):
    refs = {f: decoder_reference(model_dirs[f], CONVS) for f in ("llama", "qwen2", "gemma")}
    refs["bert"] = pair_reference(model_dirs["bert"], CONVS)
    return refs


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma", "bert"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
@pytest.mark.parametrize("cpu_kernel", ["torch", "onednn"])
@pytest.mark.parametrize("packing", [None, False])  # None: unpadded on CPU where the model allows it
def test_batched_equals_single_row_reference(model_dirs, references, family, batch_size, cpu_kernel, packing):
    model = RewardModel.from_pretrained(str(model_dirs[family]), batch_size=batch_size, cpu_kernel=cpu_kernel,
                                        packing=packing)
    assert model.cpu_choice.kernel == cpu_kernel
    assert model.engine.unpadded is (packing is None and family in ("llama", "qwen2"))
    assert_close(model.score(CONVS), references[family])


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma", "bert"])
def test_shuffled_order_gives_the_same_scores(model_dirs, references, family):
    order = list(range(len(CONVS)))
    random.Random(1).shuffle(order)
    model = RewardModel.from_pretrained(str(model_dirs[family]), batch_size=5)
    shuffled = model.score([CONVS[i] for i in order])
    assert_close(shuffled, [references[family][i] for i in order])


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
@pytest.mark.parametrize("packing", [None, False])
def test_left_padding_and_token_budget_give_the_same_scores(model_dirs, references, family, packing):
    model = RewardModel.from_pretrained(str(model_dirs[family]), batch_size=16, max_tokens_per_batch=300,
                                        packing=packing)
    model.adapter.padding_side = "left"
    assert_close(model.score(CONVS), references[family])


def test_tokenizer_properties_cover_the_traps(model_dirs):
    """The toy tokenizers really have the traps the fidelity tests claim to cover."""
    llama = AutoTokenizer.from_pretrained(model_dirs["llama"])
    gemma = AutoTokenizer.from_pretrained(model_dirs["gemma"])
    qwen = AutoTokenizer.from_pretrained(model_dirs["qwen2"])
    assert llama.pad_token is None
    for tok in (llama, gemma):  # template writes BOS and the tokenizer adds one too
        text = tok.apply_chat_template(CONVS[0], tokenize=False)
        assert text.startswith(tok.bos_token)
        assert tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2
    assert {gemma.padding_side, qwen.padding_side} == {"left", "right"}
    assert type(llama).__name__ == "LlamaTokenizer" and type(qwen).__name__ == "Qwen2Tokenizer"
    assert type(gemma).__name__ == "GemmaTokenizer"


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_encoded_input_has_exactly_one_bos(model_dirs, family):
    model = RewardModel.from_pretrained(str(model_dirs[family]))
    bos = model.adapter.tokenizer.bos_token_id
    for conv in CONVS[:5]:
        ids = model.adapter.encode(conv).input_ids
        assert ids[0] == bos and ids.count(bos) == 1


def test_a_doubled_bos_from_the_template_is_collapsed(model_dirs):
    model = RewardModel.from_pretrained(
        str(model_dirs["llama"]),
        chat_template="{{ bos_token }}{{ bos_token }}{% for m in messages %}{{ m['content'] }}<|eot_id|>{% endfor %}",
    )
    ids = model.adapter.encode(CONVS[0]).input_ids
    bos = model.adapter.tokenizer.bos_token_id
    assert ids[0] == bos and ids[1] != bos


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
@pytest.mark.parametrize("batch_size, tokens", [(1, 4096), (5, 4096), (32, 300)])
def test_packed_batches_equal_the_single_row_reference(model_dirs, references, family, batch_size, tokens):
    """Padding-free packing (rows side by side, positions restarting): the attention must keep rows apart."""
    model = RewardModel.from_pretrained(str(model_dirs[family]), packing=True, batch_size=batch_size,
                                        max_tokens_per_batch=tokens)
    assert model.engine.packing
    if batch_size > 1:
        assert any(len(b) > 1 for b in model.engine.batch_indices([model.adapter.encode(c) for c in CONVS]))
    assert_close(model.score(CONVS), references[family])


def test_packing_is_chosen_for_flash_attention_only(model_dirs):
    """Packed rows under the model's own attention by default only where it runs them at their own length (SDPA
    models on CPU run unpadded instead: test_unpadded)."""
    from rewardmill.reward_models.engines.transformers_engine import packs_by_default

    model = RewardModel.from_pretrained(str(model_dirs["llama"]), packing=False)
    assert not model.engine.packing and "padded" in model.describe()["batching"]
    config = model.adapter.model.config
    for implementation, packs in (("sdpa", False), ("eager", False), ("flash_attention_2", True),
                                  ("flex_attention", True)):
        object.__setattr__(config, "_attn_implementation_internal", implementation)
        assert config._attn_implementation == implementation
        assert packs_by_default(model.adapter) is packs


def test_packing_is_refused_for_models_that_cannot_read_packed_rows(model_dirs):
    from rewardmill.errors import OptionsError

    with pytest.raises(OptionsError, match="packing needs"):
        RewardModel.from_pretrained(str(model_dirs["bert"]), packing=True)


def test_encoding_ahead_in_parts_gives_the_same_scores_and_errors(model_dirs, references, monkeypatch):
    """On a GPU the next part is encoded in a background thread while the model runs; forced on here."""
    import threading

    import rewardmill.reward_models.model as model_module
    from rewardmill import score_rows

    monkeypatch.setattr(model_module, "ENCODE_AHEAD_ROWS", 5)
    model = RewardModel.from_pretrained(str(model_dirs["llama"]), max_length=1500)
    assert model.encode_ahead is False  # CPU: the cores are busy with the model
    model.encode_ahead = True
    threads, encode = set(), model.adapter.encode
    monkeypatch.setattr(model.adapter, "encode", lambda c: (threads.add(threading.current_thread().name), encode(c))[1])
    assert_close(model.score(CONVS), references["llama"])
    assert threads and all(name.startswith("rewardmill-encode") for name in threads)
    rows = [{"conversation": c} for c in CONVS[:12]]
    rows[3] = {"conversation": [{"role": "user", "content": "x " * 2000}, {"role": "assistant", "content": "y"}]}
    rows[7] = {"conversation": []}
    got = list(score_rows(model, rows))
    model.encode_ahead = False
    whole = list(score_rows(model, rows))
    assert [r["error"] for r in got] == [r["error"] for r in whole]
    assert "exceed the maximum length" in got[3]["error"] and got[7]["error"] and got[7]["score"] is None
    assert [r["score"] is None for r in got] == [r["score"] is None for r in whole]
    assert_close([r["score"] for r in got if r["score"] is not None], [r["score"] for r in whole if r["score"] is not None])


def test_flex_attention_packs_by_default_and_keeps_rows_apart(model_dirs, references):
    model = RewardModel.from_pretrained(str(model_dirs["qwen2"]), attn_implementation="flex_attention", batch_size=8)
    assert model.engine.packing and "packed" in model.describe()["batching"]
    assert_close(model.score(CONVS), references["qwen2"])


def test_flash_attention_is_the_gpu_default_only_when_installed_and_half_precision(monkeypatch):
    import importlib.util

    from rewardmill.reward_models.loading import default_attention
    from rewardmill.reward_models.options import LoadOptions

    real = importlib.util.find_spec
    for installed in (True, False):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: (object() if installed else None) if name == "flash_attn" else real(name, *a))
        gpu_bf16 = default_attention(LoadOptions(device="cuda", dtype="bfloat16"))
        assert gpu_bf16 == ("flash_attention_2" if installed else None)
        assert default_attention(LoadOptions(device="cuda", dtype="float32")) is None
        assert default_attention(LoadOptions(device="cpu", dtype="bfloat16")) is None
