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
def test_batched_equals_single_row_reference(model_dirs, references, family, batch_size, cpu_kernel):
    model = RewardModel.from_pretrained(str(model_dirs[family]), batch_size=batch_size, cpu_kernel=cpu_kernel)
    assert model.cpu_choice.kernel == cpu_kernel
    assert_close(model.score(CONVS), references[family])


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma", "bert"])
def test_shuffled_order_gives_the_same_scores(model_dirs, references, family):
    order = list(range(len(CONVS)))
    random.Random(1).shuffle(order)
    model = RewardModel.from_pretrained(str(model_dirs[family]), batch_size=5)
    shuffled = model.score([CONVS[i] for i in order])
    assert_close(shuffled, [references[family][i] for i in order])


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_left_padding_and_token_budget_give_the_same_scores(model_dirs, references, family):
    model = RewardModel.from_pretrained(str(model_dirs[family]), batch_size=16, max_tokens_per_batch=300)
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
