"""Every bad-input case gets a per-row error naming the row and the problem; good rows are still scored."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardmill import RewardModel, RowError, RowOptions, score_rows

GOOD = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]


@pytest.fixture(scope="module")
def model(model_dirs):
    return RewardModel.from_pretrained(str(model_dirs["qwen2"]), batch_size=4)


@pytest.fixture(scope="module")
def good_score(model_dirs):
    tok = AutoTokenizer.from_pretrained(model_dirs["qwen2"])
    rm = AutoModelForSequenceClassification.from_pretrained(model_dirs["qwen2"]).eval()
    ids = tok.apply_chat_template(GOOD, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        return rm(torch.tensor([ids])).logits[0, 0].item()


CONVERSATION_CASES = [
    ({"id": 1}, "missing field 'conversation'"),
    ({"conversation": None}, "missing field 'conversation'"),
    ({"conversation": "hello"}, "field 'conversation' must be a list, got str"),
    ({"conversation": 42}, "field 'conversation' must be a list, got int"),
    ({"conversation": []}, "field 'conversation' is an empty conversation"),
    ({"conversation": [{"role": "user", "content": "hi"}]}, "must end with an assistant turn, but its last turn is 'user'"),
    ({"conversation": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "conversation[0] has unknown role 'human'"),
    ({"conversation": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}, "conversation[0] content must be a string, got int"),
    ({"conversation": ["hi", {"role": "assistant", "content": "x"}]}, "conversation[0] must be an object"),
]


@pytest.mark.parametrize("bad,message", CONVERSATION_CASES)
def test_bad_conversation_rows(model, good_score, bad, message):
    rows = [{"conversation": GOOD}, bad, {"conversation": GOOD}]
    out = list(score_rows(model, rows))
    assert len(out) == 3
    assert out[1]["score"] is None
    assert out[1]["error"].startswith("row 1: ") and message in out[1]["error"]
    for good in (out[0], out[2]):
        assert good["error"] is None and good["score"] == pytest.approx(good_score, abs=1e-5)


INSTRUCTION_CASES = [
    ({"instruction": "What is 2+2?"}, "missing field 'response'"),
    ({"instruction": 3, "response": "4"}, "field 'instruction' must be a string, got int"),
    ({"instruction": "What is 2+2?", "response": ["4"]}, "field 'response' must be a string, got list"),
]


@pytest.mark.parametrize("bad,message", INSTRUCTION_CASES)
def test_bad_instruction_rows(model, good_score, bad, message):
    rows = [{"instruction": "What is 2+2?", "response": "4"}, bad]
    out = list(score_rows(model, rows))
    assert out[0]["score"] == pytest.approx(good_score, abs=1e-5) and out[0]["error"] is None
    assert out[1]["score"] is None and out[1]["error"].startswith("row 1: ") and message in out[1]["error"]


def test_a_bad_item_in_a_list_row_keeps_its_neighbours(model, good_score):
    rows = [{"instruction": "What is 2+2?", "responses": ["4", None, "4"]}]
    out = list(score_rows(model, rows))[0]
    assert out["scores"][0] == pytest.approx(good_score, abs=1e-5) == out["scores"][2]
    assert out["scores"][1] is None
    assert out["error"] == "row 0: responses[1] must be a string, got null"


def test_messages_rows_are_validated(model):
    rows = [
        {"messages": [{"role": "user", "content": "What is 2+2?"}], "generations": ["4", "5"]},
        {"messages": [], "generations": ["4"]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "generations": ["4"]},
        {"messages": [{"role": "user", "content": "q"}], "generations": "4"},
    ]
    out = list(score_rows(model, rows))
    assert len(out[0]["ratings"]) == 2 and out[0]["error"] is None
    assert out[1]["ratings"] is None and "row 1: field 'messages' is an empty conversation" == out[1]["error"]
    assert "row 2: field 'messages' is the prompt and must not end with an assistant turn" == out[2]["error"]
    assert "row 3: field 'generations' must be a list, got str" == out[3]["error"]


def test_strict_aborts_on_the_first_bad_row(model):
    rows = [{"conversation": GOOD}, {"conversation": []}, {"conversation": "x"}]
    with pytest.raises(RowError, match=r"^row 1: field 'conversation' is an empty conversation$"):
        list(score_rows(model, rows, RowOptions(strict=True)))


def test_score_api_raises_with_the_input_index(model):
    with pytest.raises(RowError, match="input 1: field 'conversation' must end with an assistant turn"):
        model.score([GOOD, [{"role": "user", "content": "hi"}]])


def test_over_long_rows_are_per_row_errors_by_default(model_dirs):
    model = RewardModel.from_pretrained(str(model_dirs["qwen2"]), max_length=100)
    long = [{"role": "user", "content": "x " * 100}, {"role": "assistant", "content": "y"}]
    out = list(score_rows(model, [{"conversation": GOOD}, {"conversation": long}]))
    assert out[0]["error"] is None and out[0]["score"] is not None
    assert out[1]["score"] is None
    assert "row 1: " in out[1]["error"] and "exceed the maximum length 100" in out[1]["error"]


def test_existing_output_column_is_refused(model):
    with pytest.raises(RowError, match="already has a 'score' column"):
        list(score_rows(model, [{"conversation": GOOD, "score": 1.0}]))


def test_unknown_shape_is_explained(model):
    with pytest.raises(RowError, match="cannot tell the row shape"):
        list(score_rows(model, [{"text": "hello"}]))
