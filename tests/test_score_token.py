"""Which token a decoder sequence classifier's score is read at (issue 27, point 1).

The reference is transformers' own `model(input_ids, attention_mask).logits` on one unpadded row: that forward
reads the last token that is not `config.pad_token_id`. With pad == EOS (TRL's `pad_token = eos_token`), a
template that closes the turn with that EOS is read at the token before it. rewardmill must return exactly that,
batched, for both padding sides and any batch size, in every engine; `score_token="last-token"` reads the last
token of the input (OpenRLHF's convention), checked against the head applied to the last hidden state.
"""

from __future__ import annotations

import json
import random

import httpx
import pytest
import torch
import toy_models
from sample_data import conversations
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from rewardmill import RewardModel
from rewardmill.cli import app
from rewardmill.errors import OptionsError

TOL = 1e-4
ENDS_WITH_EOS = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
CONVS = conversations(16, seed=3) + [
    [{"role": "user", "content": "Say it twice"}, {"role": "assistant", "content": "done<|eot_id|>"}],
    [{"role": "user", "content": "Empty?"}, {"role": "assistant", "content": ""}],
]


@pytest.fixture(scope="module")
def pad_eos_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pad-eos")
    return {family: toy_models.build_pad_is_eos_rm(family, root / family, seed=5) for family in ("llama", "qwen2")}


class Reference:
    """transformers alone, one conversation at a time, no padding."""

    def __init__(self, directory, template: str | None = None):
        self.tok = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
        self.template = template

    def ids(self, conv) -> list[int]:
        return self.tok.apply_chat_template(conv, chat_template=self.template, tokenize=True, return_dict=True)["input_ids"]

    def forward(self, ids: list[int]) -> float:
        """What the model's own forward returns."""
        with torch.no_grad():
            return self.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits[0, 0].item()

    def at_last_token(self, ids: list[int]) -> float:
        """The head on the hidden state of the input's very last token."""
        with torch.no_grad():
            hidden = self.model.model(torch.tensor([ids])).last_hidden_state[0, -1]
            return self.model.score(hidden).item()


def close(got, want):
    assert len(got) == len(want)
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= TOL, f"max difference {worst:.2e}"


SETUPS = {  # name -> (directory key, chat template, does the rendered text end with the pad token)
    "llama pad==eos, eos inside and at the end": ("pad-eos llama", None, True),
    "qwen2 pad==eos, eos inside only": ("pad-eos qwen2", None, False),
    "qwen2 pad==eos, eos at the end": ("pad-eos qwen2", ENDS_WITH_EOS, True),
    "qwen2 pad!=eos": ("qwen2", None, False),
    "gemma pad!=eos": ("gemma", None, False),
    "llama without pad": ("llama", None, False),
}


def directory_for(key, model_dirs, pad_eos_dirs):
    return pad_eos_dirs[key.split()[1]] if key.startswith("pad-eos") else model_dirs[key]


@pytest.mark.parametrize("setup", SETUPS)
def test_the_default_score_is_the_models_own_forward(setup, model_dirs, pad_eos_dirs):
    key, template, ends_with_pad = SETUPS[setup]
    directory = directory_for(key, model_dirs, pad_eos_dirs)
    ref = Reference(directory, template)
    ids = [ref.ids(c) for c in CONVS]
    pad = ref.model.config.pad_token_id
    assert all((i[-1] == pad) == ends_with_pad for i in ids[:-2])
    want = [ref.forward(i) for i in ids]
    order = list(range(len(CONVS)))
    random.Random(1).shuffle(order)
    for side in ("left", "right"):
        for batch_size in (1, 3, 8):
            model = RewardModel.from_pretrained(str(directory), chat_template=template, padding_side=side,
                                                batch_size=batch_size)
            close(model.score(CONVS), want)
            close(model.score([CONVS[i] for i in order]), [want[i] for i in order])


@pytest.mark.parametrize("setup", [s for s in SETUPS if SETUPS[s][2]])
def test_with_pad_eos_the_old_reading_is_a_real_difference(setup, model_dirs, pad_eos_dirs):
    """The test above can fail: reading the closing EOS gives other scores and flips pairs."""
    key, template, _ = SETUPS[setup]
    ref = Reference(directory_for(key, model_dirs, pad_eos_dirs), template)
    ids = [ref.ids(c) for c in CONVS]
    own = [ref.forward(i) for i in ids]
    at_eos = [ref.at_last_token(i) for i in ids]
    assert min(abs(a - b) for a, b in zip(own, at_eos)) > 1e-3
    pairs = [(a, b) for a in range(len(ids)) for b in range(a)]
    flips = sum((own[a] > own[b]) != (at_eos[a] > at_eos[b]) for a, b in pairs)
    assert flips > 0


@pytest.mark.parametrize("setup", [s for s in SETUPS if SETUPS[s][2]])
def test_last_token_reads_the_closing_token(setup, model_dirs, pad_eos_dirs):
    key, template, _ = SETUPS[setup]
    directory = directory_for(key, model_dirs, pad_eos_dirs)
    ref = Reference(directory, template)
    want = [ref.at_last_token(ref.ids(c)) for c in CONVS]
    for side, batch_size in (("left", 5), ("right", 4)):
        model = RewardModel.from_pretrained(str(directory), chat_template=template, score_token="last-token",
                                            padding_side=side, batch_size=batch_size)
        close(model.score(CONVS), want)


def test_packed_batches_read_the_same_token(pad_eos_dirs):
    directory = pad_eos_dirs["llama"]
    ref = Reference(directory)
    model = RewardModel.from_pretrained(str(directory), packing=True, batch_size=6)
    assert model.engine.packing
    close(model.score(CONVS), [ref.forward(ref.ids(c)) for c in CONVS])


@pytest.mark.parametrize("max_length", [9, 20, 29, 40])
def test_right_truncation_reads_where_the_model_reads_the_cut_row(max_length, pad_eos_dirs):
    """Cut after an EOS inside the conversation, the model reads the token before that EOS."""
    directory = pad_eos_dirs["llama"]
    ref = Reference(directory)
    long = [c for c in CONVS if len(ref.ids(c)) > max_length]
    cut_after_eos = [c for c in long if ref.ids(c)[max_length - 1] == ref.model.config.pad_token_id]
    assert cut_after_eos or max_length == 9
    model = RewardModel.from_pretrained(str(directory), max_length=max_length, truncation="right", batch_size=4)
    close(model.score(long), [ref.forward(ref.ids(c)[:max_length]) for c in long])


def test_a_bad_score_token_is_refused(llama_dir, bert_dir):
    with pytest.raises(OptionsError, match="score_token must be one of last-non-pad, last-token"):
        RewardModel.from_pretrained(str(llama_dir), score_token="eos")
    with pytest.raises(OptionsError, match="--score-token does not apply to pair models"):
        RewardModel.from_pretrained(str(bert_dir), score_token="last-token")


def test_the_score_token_is_part_of_the_models_identity(pad_eos_dirs):
    directory = str(pad_eos_dirs["llama"])
    default = RewardModel.from_pretrained(directory)
    last = RewardModel.from_pretrained(directory, score_token="last-token")
    assert default.fingerprint != last.fingerprint  # the score cache and --resume tell them apart


# ----------------------------------------------------------------------------------------- the CLI


def test_inspect_says_which_token_is_read_and_warns_on_pad_eos(pad_eos_dirs, model_dirs):
    runner = CliRunner()
    out = runner.invoke(app, ["inspect", str(pad_eos_dirs["llama"]), "--threads", "keep"])
    assert out.exit_code == 0, out.output
    assert "the last token that is not the pad token '<|eot_id|>'" in out.output
    assert "warning (pad token)" in out.output and "is an EOS token" in out.output
    last = runner.invoke(app, ["inspect", str(pad_eos_dirs["llama"]), "--threads", "keep", "--score-token", "last-token"])
    assert "the last token of the input" in last.output and "differs from the model's own forward" in last.output
    plain = runner.invoke(app, ["inspect", str(model_dirs["gemma"]), "--threads", "keep"])
    assert "not the pad token '<pad>'" in plain.output and "warning (pad token)" not in plain.output
    no_pad = runner.invoke(app, ["inspect", str(model_dirs["llama"]), "--threads", "keep"])
    assert "the config has no pad_token_id" in no_pad.output


@pytest.mark.parametrize("command", ["score", "dpo"])
def test_every_scoring_command_takes_the_option(command, pad_eos_dirs, tmp_path):
    directory = pad_eos_dirs["llama"]
    ref = Reference(directory)
    prompt = [{"role": "user", "content": "Name a colour."}]
    answers = ["Blue.", "Green, like grass.", "Red"]
    convs = [prompt + [{"role": "assistant", "content": a}] for a in answers]
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"messages": prompt, "generations": answers}) + "\n")
    for token, read in (("last-non-pad", ref.forward), ("last-token", ref.at_last_token)):
        want = [read(ref.ids(c)) for c in convs]
        out = tmp_path / f"{command}-{token}.jsonl"
        args = [command, str(source), "-o", str(out), "-m", str(directory), "--score-token", token, "--threads", "keep"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        row = json.loads(out.read_text().splitlines()[0])
        if command == "score":
            close(row["ratings"], want)
        else:
            best, worst = max(range(3), key=want.__getitem__), min(range(3), key=want.__getitem__)
            assert row["chosen"][-1]["content"] == answers[best] and row["rejected"][-1]["content"] == answers[worst]
            close([row["chosen_rating"], row["rejected_rating"]], [want[best], want[worst]])


# ---------------------------------------------------------------------------------------- the server


def test_the_server_reads_the_same_token(pad_eos_dirs):
    from server_harness import running

    from rewardmill.server import create_app

    directory = pad_eos_dirs["llama"]
    ref = Reference(directory)
    texts = [ref.tok.apply_chat_template(c, tokenize=False) for c in CONVS[:6]]
    assert all(t.endswith("<|eot_id|>") for t in texts)
    want = [ref.forward(ref.tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    model = RewardModel.from_pretrained(str(directory), threads=1, cpu_kernel="torch", batch_size=4)
    with running(create_app(model)) as url:
        rewards = httpx.post(url + "/get_reward", json={"query": texts}, timeout=60).json()["rewards"]
        close(rewards, want)
        ids = [ref.ids(c) for c in CONVS[:6]]
        data = httpx.post(url + "/classify", json={"input": ids, "use_activation": False}, timeout=60).json()["data"]
        close([d["probs"][0] for d in data], want)
