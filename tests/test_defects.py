"""The defects a code review found, each pinned by a test that failed before its fix.

References are computed here, one row at a time, with plain transformers or the model's own code.
"""

import json
import os
import shutil
import threading

import pytest
import remote_models
import torch
import toy_models
from sample_data import conversations
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from rewardmill import RewardModel
from rewardmill.cli import app
from rewardmill.reward_models import cpu

CONVS = conversations(12, seed=11)
TOL = 1e-5
runner = CliRunner()


def close(got, want, tol=TOL):
    assert len(got) == len(want)
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= tol, f"max difference {worst:.2e}"


@pytest.fixture
def two_threads():
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)


# ----------------------------------------------------------------------- CPU tuning and global state


def test_loading_leaves_torch_threads_alone_unless_asked(llama_dir, two_threads, monkeypatch):
    calls = []
    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), set_threads(n)))
    RewardModel.from_pretrained(str(llama_dir))
    RewardModel.from_pretrained(str(llama_dir), cpu_kernel="onednn")
    assert calls == [] and torch.get_num_threads() == 2  # not even for timing
    RewardModel.from_pretrained(str(llama_dir), threads=1)
    assert torch.get_num_threads() == 1


def test_inspect_says_what_was_changed(llama_dir, two_threads):
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="onednn")
    note = model.describe()["cpu"]
    assert "torch threads set 2 -> 1" in note and "linear layers routed to oneDNN" in note
    untouched = RewardModel.from_pretrained(str(llama_dir), cpu_kernel="torch", threads=1)
    assert "nothing changed" in untouched.describe()["cpu"]


def test_onednn_routing_skips_layers_not_on_the_cpu():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8, device="meta"))
    cpu.use_onednn(model, prepack=False)
    assert "forward" in vars(model[0])
    assert "forward" not in vars(model[1])  # a layer on another device keeps its own forward


def test_thread_limit_follows_the_host(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(cpu, "_cgroup_cpus", lambda: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu.thread_candidates() == (1, 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray sets for an actor with num_cpus=1
    assert cpu.thread_candidates() == (1,)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(cpu, "_cgroup_cpus", lambda: 3)
    assert cpu.thread_candidates() == (1, 2)


def _timed_kernels(monkeypatch, torch_ms: float, onednn_ms):
    """Make the two kernels take known times (sleeps), so the choice is deterministic."""
    import time

    calls = {"onednn": 0}

    def torch_linear(x, w, b=None):
        time.sleep(torch_ms / 1000)

    def onednn_linear(x, w, b, *args):
        calls["onednn"] += 1
        time.sleep(onednn_ms(calls["onednn"]) / 1000)

    monkeypatch.setattr(torch.nn.functional, "linear", torch_linear)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", onednn_linear)


def test_a_small_lead_does_not_change_the_kernel(monkeypatch):
    if not cpu.onednn_available():
        pytest.skip("oneDNN is not available in this torch build")
    model = torch.nn.Sequential(torch.nn.Linear(16, 16))
    _timed_kernels(monkeypatch, 10.0, lambda n: 9.8)  # 2% faster: within noise, keep torch's kernel
    choice = cpu.choose(model, cpu.CpuOptions(kernel="auto"))
    assert choice.kernel == "torch" and "forward" not in vars(model[0])


def test_a_clear_lead_changes_the_kernel_and_one_slow_round_does_not(monkeypatch):
    if not cpu.onednn_available():
        pytest.skip("oneDNN is not available in this torch build")
    model = torch.nn.Sequential(torch.nn.Linear(16, 16))
    _timed_kernels(monkeypatch, 10.0, lambda n: 5.0)
    assert cpu.choose(model, cpu.CpuOptions(kernel="auto")).kernel == "onednn"
    # torch's kernel is clearly faster, but oneDNN's first timing round is disturbed by a burst of load
    model = torch.nn.Sequential(torch.nn.Linear(16, 16))
    _timed_kernels(monkeypatch, 10.0, lambda n: 2.0 if n <= 3 else 30.0)
    assert cpu.choose(model, cpu.CpuOptions(kernel="auto")).kernel == "torch"


# ------------------------------------------------------------- which token a classifier reads


@pytest.fixture(scope="module")
def pad_is_eos_dir(model_dirs, tmp_path_factory):
    """Qwen2 classifier whose pad token is its EOS (<|im_end|>); the template below ends with that EOS."""
    directory = tmp_path_factory.mktemp("pad-eos") / "qwen2-pad-eos"
    shutil.copytree(model_dirs["qwen2"], directory)
    tok = AutoTokenizer.from_pretrained(directory)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    config["pad_token_id"] = tok.eos_token_id
    (directory / "config.json").write_text(json.dumps(config))
    return directory


ENDS_WITH_EOS = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"


def last_token_reference(directory, convs, template=None):
    """One row, no padding: the head applied to the last token's hidden state."""
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    scores = []
    with torch.no_grad():
        for conv in convs:
            ids = tok.apply_chat_template(conv, chat_template=template, tokenize=True, return_dict=True)["input_ids"]
            hidden = model.model(torch.tensor([ids])).last_hidden_state[0, -1]
            scores.append(model.score(hidden).item())
    return scores


def test_last_token_reads_a_closing_pad_token_with_model_kwargs(pad_is_eos_dir):
    """score_token="last-token" (OpenRLHF's convention) reads the closing EOS even though it is the pad id; the
    default reading, transformers' own, is tested in test_score_token.py."""
    tok = AutoTokenizer.from_pretrained(pad_is_eos_dir)
    text = tok.apply_chat_template(CONVS[0], chat_template=ENDS_WITH_EOS, tokenize=False)
    assert text.endswith(tok.pad_token)  # the trap: the last real token is the pad id
    want = last_token_reference(pad_is_eos_dir, CONVS, ENDS_WITH_EOS)
    for kwargs in ({}, {"model_kwargs": {"output_hidden_states": False}}):
        model = RewardModel.from_pretrained(str(pad_is_eos_dir), chat_template=ENDS_WITH_EOS, batch_size=4,
                                            score_token="last-token", **kwargs)
        close(model.score(CONVS), want)


def test_loading_never_changes_the_model_config(llama_dir):
    model = RewardModel.from_pretrained(str(llama_dir), model_kwargs={"output_hidden_states": False}, batch_size=4)
    assert model.adapter.model.config.pad_token_id is None  # the Llama toy has no pad token
    close(model.score(CONVS), last_token_reference(llama_dir, CONVS))


def test_a_head_that_is_not_a_plain_linear_is_read_at_the_last_token(model_dirs):
    from rewardmill.reward_models.adapters import ClassifierAdapter
    from rewardmill.reward_models.options import TextOptions

    directory = model_dirs["qwen2"]
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    model.score = torch.nn.Sequential(torch.nn.Tanh(), model.score)
    want = []
    with torch.no_grad():
        for conv in CONVS:
            ids = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
            want.append(model.score(model.model(torch.tensor([ids])).last_hidden_state[0, -1]).item())
    rm = RewardModel(ClassifierAdapter(model, tok, TextOptions()), name="sequential-head")
    close(rm.score(CONVS), want)


# --------------------------------------------------------------------- positions with left padding


def test_builtin_classifier_with_absolute_positions_and_left_padding(tmp_path):
    directory = toy_models.build_gpt2_rm(tmp_path / "gpt2")
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        want = [model(torch.tensor([tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]]))
                .logits[0, 0].item() for c in CONVS]
    rm = RewardModel.from_pretrained(str(directory), padding_side="left", batch_size=5)
    assert rm.adapter.kind == "classifier" and rm.adapter.padding_side == "left"
    close(rm.score(CONVS), want)


@pytest.mark.parametrize("kind", ["value-head", "reward-token", "multi-objective"])
def test_custom_heads_with_absolute_positions_and_left_padding(tmp_path, kind):
    directory = remote_models.build_gpt2_custom(kind, tmp_path / kind)
    read = {"value-head": "values", "reward-token": "get_score", "multi-objective": "score"}[kind]
    want = remote_models.own_scores(directory, CONVS, read)
    for side in ("left", "right"):
        rm = RewardModel.from_pretrained(str(directory), trust_remote_code=True, padding_side=side, batch_size=5)
        assert rm.adapter.kind == kind and rm.adapter.padding_side == side
        close(rm.score(CONVS), want)


# ------------------------------------------------------------------------ thread-safe pair encoding

LONG = [{"role": "user", "content": "tell me a long story " * 6}, {"role": "assistant", "content": "once upon a time " * 6}]


def test_pair_truncation_never_changes_the_shared_tokenizer(bert_dir):
    tok = AutoTokenizer.from_pretrained(bert_dir)
    full = len(tok(LONG[0]["content"], LONG[1]["content"])["input_ids"])
    for side in ("left", "right"):
        rm = RewardModel.from_pretrained(str(bert_dir), max_length=full - 10, truncation=side)
        tokenizer = rm.adapter.tokenizer
        writes = []

        class Watched(type(tokenizer)):
            def __setattr__(self, name, value):
                writes.append(name)
                super().__setattr__(name, value)

        tokenizer.__class__ = Watched
        assert len(rm.adapter.encode(LONG).input_ids) == full - 10
        assert writes == [], f"encode changed the shared tokenizer: {writes}"


def test_pair_encoding_from_several_threads_matches_one_thread(bert_dir):
    tok = AutoTokenizer.from_pretrained(bert_dir)
    full = len(tok(LONG[0]["content"], LONG[1]["content"])["input_ids"])
    left = RewardModel.from_pretrained(str(bert_dir), max_length=full - 10, truncation="left").adapter
    right = RewardModel.from_pretrained(str(bert_dir), max_length=full - 10, truncation="right").adapter
    right.tokenizer = left.tokenizer  # one tokenizer shared by both policies, as a server's threads would
    want = {"left": left.encode(LONG).input_ids, "right": right.encode(LONG).input_ids}
    assert want["left"] != want["right"]
    got, start = [], threading.Barrier(4)

    def work(adapter, side):
        start.wait()
        for _ in range(200):
            got.append((side, adapter.encode(LONG).input_ids))

    threads = [threading.Thread(target=work, args=(a, s)) for a, s in [(left, "left"), (right, "right")] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 800 and all(ids == want[side] for side, ids in got)


# ----------------------------------------------------------------------- errors in the CLI and options


def test_cli_reports_its_own_errors_but_not_library_bugs(tmp_path, llama_dir, monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"conversation": LONG}) + "\n")

    def broken(*args, **kwargs):
        raise ValueError("a bug deep inside a library")

    import rewardmill.runs.job

    monkeypatch.setattr(rewardmill.runs.job, "run_job", broken)
    result = runner.invoke(app, ["score", str(source), "-m", str(llama_dir), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code != 2 and isinstance(result.exception, ValueError)  # a traceback, not "error: ..."


@pytest.mark.parametrize("option,value", [("alpha", 3.0), ("objectives", True), ("gating", True),
                                          ("reward_token_id", 5), ("token_type_ids", False)])
def test_an_option_the_family_does_not_use_is_an_error(llama_dir, option, value):
    from rewardmill import OptionsError

    with pytest.raises(OptionsError, match=f"--{option.replace('_', '-')}.* does not apply to classifier models"):
        RewardModel.from_pretrained(str(llama_dir), **{option: value})


@pytest.mark.parametrize("flags,named", [(["--alpha", "3"], "--alpha"), (["--objectives"], "--objectives"),
                                         (["--gating"], "--gating"), (["--reward-token-id", "5"], "--reward-token-id"),
                                         (["--no-token-type-ids"], "--token-type-ids"),
                                         (["--padding-side", "left"], "--padding-side"),
                                         (["--chat-template", "{{ x }}"], "--chat-template"),
                                         (["--all-labels"], "--all-labels"), (["--probabilities"], "--probabilities")])
def test_cli_option_the_family_does_not_use_is_an_error(tmp_path, bert_dir, llama_dir, flags, named):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "q", "response": "a"}) + "\n")
    pair_only = named in ("--alpha", "--token-type-ids")
    model = llama_dir if pair_only else bert_dir  # a family that does not take the flag
    result = runner.invoke(app, ["score", str(source), "-m", str(model), "-o", str(tmp_path / "o.jsonl"), *flags])
    assert result.exit_code == 2, result.output
    assert named in result.output and "does not apply to" in result.output
    assert not (tmp_path / "o.jsonl").exists()
