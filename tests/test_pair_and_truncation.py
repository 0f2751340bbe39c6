"""Pair-input options (token_type_ids, alpha) and the truncation policies, against hand-made references."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

from rewardmill import EngineOptions, RewardModel, RowError
from rewardmill.reward_models.adapters.pair import PairAdapter
from rewardmill.reward_models.family_options import PairOptions
from rewardmill.reward_models.options import TextOptions

Q, A = "what is the capital of france?", "paris is the capital."
CONV = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]
LONG = [{"role": "user", "content": "tell me a long story " * 6}, {"role": "assistant", "content": "once upon a time " * 6}]


def bert(bert_dir):
    return AutoTokenizer.from_pretrained(bert_dir), AutoModelForSequenceClassification.from_pretrained(bert_dir).eval()


def test_pair_without_token_type_ids_matches_seed_001_usage(bert_dir):
    tok, model = bert(bert_dir)
    enc = tok(Q, A, return_token_type_ids=False, return_tensors="pt")
    with torch.no_grad():
        want = model(**enc).logits[0, 0].item()
        with_types = model(**tok(Q, A, return_tensors="pt")).logits[0, 0].item()
    assert abs(want - with_types) > 1e-6  # the option really changes the input
    rm = RewardModel.from_pretrained(str(bert_dir), token_type_ids=False)
    assert rm.score([CONV, CONV]) == pytest.approx([want, want], abs=1e-5)
    assert rm.describe()["token_type_ids"] == "not passed"


def test_alpha_multiplies_the_score_when_the_model_does_not_take_it(bert_dir):
    tok, model = bert(bert_dir)
    with torch.no_grad():
        want = 10 * model(**tok(Q, A, return_tensors="pt")).logits[0, 0].item()
    scaled = RewardModel.from_pretrained(str(bert_dir), alpha=10).score([CONV])[0]
    assert scaled == pytest.approx(want, abs=1e-5)


class AlphaBert(BertForSequenceClassification):
    """Seed 001 style: forward takes alpha and returns the scaled reward tensor itself."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, alpha=1.0):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return torch.tanh(out.logits) * alpha


def test_alpha_is_passed_to_a_forward_that_takes_it(bert_dir):
    tok = AutoTokenizer.from_pretrained(bert_dir)
    model = AlphaBert.from_pretrained(bert_dir).eval()
    with torch.no_grad():
        want = model(**tok(Q, A, return_tensors="pt"), alpha=10).reshape(-1)[0].item()
    adapter = PairAdapter(model, tok, TextOptions(max_length=128), PairOptions(alpha=10))
    assert adapter.alpha_in_forward
    rm = RewardModel(adapter, name="alpha-bert", engine_options=EngineOptions())
    assert rm.score([CONV])[0] == pytest.approx(want, abs=1e-5)


def test_pair_truncation_policies(bert_dir):
    tok, model = bert(bert_dir)
    full = len(tok(LONG[0]["content"], LONG[1]["content"])["input_ids"])
    limit = full - 10
    with pytest.raises(RowError, match=f"{full} tokens exceed the maximum length {limit}"):
        RewardModel.from_pretrained(str(bert_dir), max_length=limit).score([LONG])
    right = RewardModel.from_pretrained(str(bert_dir), max_length=limit, truncation="right")
    enc = tok(LONG[0]["content"], LONG[1]["content"], truncation="only_second", max_length=limit, return_tensors="pt")
    assert enc["input_ids"].shape[1] == limit
    with torch.no_grad():
        want = model(**enc).logits[0, 0].item()
    assert right.score([LONG])[0] == pytest.approx(want, abs=1e-5)


def decoder_ids(directory, conv):
    tok = AutoTokenizer.from_pretrained(directory)
    return tok, tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]


def logit(directory, ids):
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, 0].item()


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_decoder_truncation_policies(model_dirs, family):
    directory = model_dirs[family]
    tok, ids = decoder_ids(directory, LONG)
    limit = len(ids) - 15
    with pytest.raises(RowError, match=f"{len(ids)} tokens exceed the maximum length {limit}"):
        RewardModel.from_pretrained(str(directory), max_length=limit).score([LONG])

    right = RewardModel.from_pretrained(str(directory), max_length=limit, truncation="right").score([LONG])[0]
    assert right == pytest.approx(logit(directory, ids[:limit]), abs=1e-5)

    bos = tok.bos_token_id
    kept = [bos] + ids[len(ids) - (limit - 1):] if bos is not None else ids[len(ids) - limit:]
    left = RewardModel.from_pretrained(str(directory), max_length=limit, truncation="left").score([LONG])[0]
    assert left == pytest.approx(logit(directory, kept), abs=1e-5)


def test_model_max_length_is_the_default_limit(model_dirs):
    rm = RewardModel.from_pretrained(str(model_dirs["bert"]))
    assert rm.adapter.max_length == 256  # max_position_embeddings of the toy BERT
