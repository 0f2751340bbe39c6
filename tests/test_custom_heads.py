"""Custom-head and remote-code reward models: batched scores equal an independent single-row reference
computed here with the model's own code, outputs are named, and remote code never runs without consent."""

import json
import random
import sys

import pytest
import remote_models
import torch
from sample_data import conversations
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from rewardmill import ModelLoadError, RewardModel
from rewardmill.cli import app

CONVS = conversations(20, seed=3)
runner = CliRunner()
TOL = 1e-5


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    return {name: build(root / name) for name, build in remote_models.BUILDERS.items()}


def chat_ids(tok, conv):
    return tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]


def close(got, want):
    assert len(got) == len(want)
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= TOL, f"max difference {worst:.2e}"


def orders():
    shuffled = list(range(len(CONVS)))
    random.Random(7).shuffle(shuffled)
    return [(1, list(range(len(CONVS)))), (3, shuffled), (16, list(range(len(CONVS))))]


# ------------------------------------------------------------------------------------------- consent


@pytest.mark.parametrize("name,module", [("armo", "modeling_armo"), ("internlm", "modeling_internlm_rm"),
                                         ("kluge", "modeling_kluge"), ("value", "modeling_value")])
def test_remote_code_is_refused_and_never_imported(dirs, name, module):
    before = set(sys.modules)  # other tests may have imported the same code from models of their own
    with pytest.raises(ModelLoadError, match=r"--trust-remote-code.*Nothing of it was run"):
        RewardModel.from_pretrained(str(dirs[name]))
    result = runner.invoke(app, ["inspect", str(dirs[name])])
    assert result.exit_code == 2 and "--trust-remote-code" in result.output and "read it first" in result.output
    assert not (dirs[name] / remote_models.MARKER.format(name=module)).exists()
    assert not [m for m in set(sys.modules) - before if module in m]


def test_the_import_marker_works_when_trusted(tmp_path):
    directory = remote_models.build_value(tmp_path / "value")
    RewardModel.from_pretrained(str(directory), trust_remote_code=True)
    assert (directory / remote_models.MARKER.format(name="modeling_value")).exists()


def test_unknown_custom_code_says_what_it_found(dirs):
    with pytest.raises(ModelLoadError) as error:
        RewardModel.from_pretrained(str(dirs["mystery"]), trust_remote_code=True)
    message = str(error.value)
    assert "modeling_mystery.MysteryModel" in message and "--kind multi-objective|reward-token|value-head" in message


# ------------------------------------------------------------------------------------- ArmoRM style


def armo_reference(directory):
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True).eval()
    rows = []
    with torch.no_grad():
        for conv in CONVS:
            out = model(input_ids=torch.tensor([chat_ids(tok, conv)]))
            rows.append((out.score[0, 0].item(), out.rewards[0].tolist(), out.gating_output[0].tolist()))
    return rows


def test_multi_objective_scores_objectives_and_gating(dirs):
    ref = armo_reference(dirs["armo"])
    for batch_size, order in orders():
        rm = RewardModel.from_pretrained(str(dirs["armo"]), trust_remote_code=True, objectives=True, gating=True,
                                         batch_size=batch_size)
        assert rm.adapter.kind == "multi-objective"
        got = rm.score_outputs([CONVS[i] for i in order])
        close([g["score"] for g in got], [ref[i][0] for i in order])
        for k, name in enumerate(remote_models.OBJECTIVES):
            close([g[name] for g in got], [ref[i][1][k] for i in order])
            close([g[f"gating_{name}"] for g in got], [ref[i][2][k] for i in order])


def test_multi_objective_cli_columns(dirs, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"conversation": c}) + "\n" for c in CONVS[:5]))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", str(dirs["armo"]), "-o", str(out), "--trust-remote-code",
                                 "--objectives", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ref = armo_reference(dirs["armo"])[:5]
    close([r["score"] for r in rows], [x[0] for x in ref])
    close([r["correctness"] for r in rows], [x[1][1] for x in ref])
    assert not any(k.startswith("gating_") for k in rows[0])


def test_unnamed_objectives_are_numbered(tmp_path):
    directory = remote_models.build_armo(tmp_path / "armo-unnamed", named=False)
    rm = RewardModel.from_pretrained(str(directory), trust_remote_code=True, objectives=True)
    assert rm.adapter.output_names == ("score", "objective_0", "objective_1", "objective_2", "objective_3")


# ------------------------------------------------------------------------------- InternLM2 style


def test_reward_token_model_matches_its_own_get_score(dirs):
    directory = dirs["internlm"]
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    ref = [model.get_score(tok, conv) for conv in CONVS]
    for batch_size, order in orders():
        rm = RewardModel.from_pretrained(str(directory), trust_remote_code=True, batch_size=batch_size)
        assert rm.adapter.kind == "reward-token"
        close(rm.score([CONVS[i] for i in order]), [ref[i] for i in order])
    ids = rm.adapter.encode(CONVS[0]).input_ids
    assert ids[-1] == tok.convert_tokens_to_ids(remote_models.REWARD_TOKEN)


def test_reward_token_survives_truncation(dirs):
    rm = RewardModel.from_pretrained(str(dirs["internlm"]), trust_remote_code=True, max_length=30, truncation="right")
    ids = rm.adapter.encode(CONVS[1]).input_ids
    assert len(ids) == 30 and ids[-1] == rm.adapter.chat.suffix_ids[0]


# ----------------------------------------------------------------------------- seed 001 (alpha)


def kluge_reference(directory, alpha):
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    out = []
    with torch.no_grad():
        for conv in CONVS:
            prompt = conv[0]["content"] if len(conv) == 2 else "\n\n".join(
                f"{m['role'].capitalize()}: {m['content']}" for m in conv[:-1])
            enc = tok(prompt, conv[-1]["content"], return_token_type_ids=False, return_tensors="pt")
            out.append(model(**enc, alpha=alpha).item())
    return out


def test_regression_model_with_alpha_kwarg(dirs, tmp_path):
    quirks = tmp_path / "quirks.json"
    quirks.write_text(json.dumps([{"match": "kluge", "kind": "pair", "token_type_ids": False}]))
    ref = kluge_reference(dirs["kluge"], 10)
    for batch_size, order in orders():
        rm = RewardModel.from_pretrained(str(dirs["kluge"]), trust_remote_code=True, quirks=quirks,
                                         model_kwargs={"alpha": 10}, batch_size=batch_size)
        assert not rm.adapter.use_token_type_ids
        close(rm.score([CONVS[i] for i in order]), [ref[i] for i in order])
    by_option = RewardModel.from_pretrained(str(dirs["kluge"]), trust_remote_code=True, alpha=10,
                                            token_type_ids=False)
    assert by_option.adapter.alpha_in_forward
    close(by_option.score(CONVS), ref)


def test_model_kwarg_from_the_cli(dirs, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"conversation": c}) + "\n" for c in CONVS))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", str(dirs["kluge"]), "-o", str(out),
                                 "--trust-remote-code", "--model-kwarg", "alpha=10", "--no-token-type-ids"])
    assert result.exit_code == 0, result.output
    close([json.loads(line)["score"] for line in out.read_text().splitlines()], kluge_reference(dirs["kluge"], 10))


# --------------------------------------------------------------------------------------- value head


def test_value_head_reads_the_last_real_token_on_either_padding_side(dirs, tmp_path):
    directory = dirs["value"]
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    with torch.no_grad():
        ref = [model(input_ids=torch.tensor([chat_ids(tok, c)])).values[0, -1].item() for c in CONVS]
    quirks = tmp_path / "quirks.json"
    quirks.write_text(json.dumps([{"architecture": "Qwen2ValueModel", "kind": "value-head", "padding_side": "left"}]))
    for batch_size, order in orders():
        for extra in ({}, {"quirks": quirks}):
            rm = RewardModel.from_pretrained(str(directory), trust_remote_code=True, batch_size=batch_size, **extra)
            assert rm.adapter.kind == "value-head"
            assert rm.adapter.padding_side == ("left" if extra else "right")
            close(rm.score([CONVS[i] for i in order]), [ref[i] for i in order])


# ------------------------------------------------------------------------------------- multi-label


def test_multi_label_classifier_label_all_labels_probabilities(dirs):
    directory = dirs["multilabel"]
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        ref = [model(torch.tensor([chat_ids(tok, c)])).logits[0] for c in CONVS]
    with pytest.raises(ModelLoadError, match=r"3 output labels \(bad, ok, good\).*--label"):
        RewardModel.from_pretrained(str(directory))
    for batch_size, order in orders():
        by_name = RewardModel.from_pretrained(str(directory), label="good", all_labels=True, batch_size=batch_size)
        got = by_name.score_outputs([CONVS[i] for i in order])
        close([g["score"] for g in got], [ref[i][2].item() for i in order])
        close([g["logit_bad"] for g in got], [ref[i][0].item() for i in order])
    probs = RewardModel.from_pretrained(str(directory), label=1, probabilities=True, all_labels=True).score_outputs(CONVS)
    close([p["score"] for p in probs], [torch.softmax(r, -1)[1].item() for r in ref])
    close([p["prob_good"] for p in probs], [torch.softmax(r, -1)[2].item() for r in ref])


# ---------------------------------------------------------------------------------- inspect, quirks


@pytest.mark.parametrize("name,kind,extra", [
    ("armo", "multi-objective", "output.score; objectives from output.rewards: helpfulness"),
    ("internlm", "reward-token", "as its get_score/get_scores does"),
    ("kluge", "pair", "forward(input_ids, attention_mask, token_type_ids)"),
    ("value", "value-head", "per-token value read at the last real token"),
])
def test_inspect_reports_the_family(dirs, name, kind, extra):
    result = runner.invoke(app, ["inspect", str(dirs[name]), "--trust-remote-code"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert f"kind                       {kind}" in result.output
    assert "(the model's own code)" in result.output and extra in result.output


def test_bad_quirks_file_is_explained(dirs, tmp_path):
    quirks = tmp_path / "quirks.json"
    quirks.write_text(json.dumps([{"match": "*", "padding": "left"}]))
    with pytest.raises(ModelLoadError, match="unknown field 'padding'"):
        RewardModel.from_pretrained(str(dirs["multilabel"]), quirks=quirks, label=0)


def test_builtin_quirks_cover_known_models():
    from rewardmill.reward_models.adapters import detect_model
    from rewardmill.reward_models.quirks import load_quirks

    table = load_quirks()
    armo = detect_model("RLHFlow/ArmoRM-Llama3-8B-v0.1", {"model_type": "llama", "auto_map": {
        "AutoModelForSequenceClassification": "modeling_custom.LlamaForRewardModelWithGating"}}, quirks=table)
    assert armo.kind == "multi-objective" and armo.remote_code
    intern = detect_model("internlm/internlm2-7b-reward", {"model_type": "internlm2", "auto_map": {
        "AutoConfig": "configuration_internlm2.InternLM2Config",
        "AutoModel": "modeling_internlm2.InternLM2ForRewardModel"}}, quirks=table)
    assert intern.kind == "reward-token" and intern.auto_class == "AutoModel" and intern.quirk.settings["reward_token_id"] == 92527


@pytest.mark.parametrize("name", ["internlm", "value"])
def test_cli_scores_match_the_models_own_single_row_code(dirs, tmp_path, name):
    directory = dirs[name]
    ref = remote_models.own_scores(directory, CONVS, "get_score" if name == "internlm" else "values")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "conversation": c}) + "\n" for i, c in enumerate(CONVS)))
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["score", str(source), "-m", str(directory), "-o", str(out), "--trust-remote-code",
                                 "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == list(range(len(CONVS)))
    close([r["score"] for r in rows], ref)
