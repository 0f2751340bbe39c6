"""The Scorer protocol, the row layer that runs any scorer, the engine's batch step, per-row shapes,
grouped options, the adapter registry, seed 001's model under another name, and the length baseline."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import remote_models
import torch
from sample_data import conversations
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from rewardmill import (
    Engine,
    EngineOptions,
    ItemResult,
    LengthScorer,
    OptionsError,
    RewardModel,
    RowOptions,
    Scorer,
    score_file,
    score_rows,
)
from rewardmill.cli import app

runner = CliRunner()
TOL = 1e-5
Q = "What is the capital of France?"


def close(got, want, tol=TOL):
    assert len(got) == len(want)
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= tol, f"max difference {worst:.2e}"


def chat_reference(directory, convs):
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        return [model(torch.tensor([tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]]))
                .logits[0, 0].item() for c in convs]


# ------------------------------------------------------------------------------------ the protocol


class ToyJudge:
    """A judge-shaped scorer: rates a row's responses together, has per-item outputs and per-item failures."""

    name = "toy-judge"
    output_names = ("score", "rationale")
    item_output_names = ("raw_output",)

    def __init__(self):
        self.calls = []

    def score_items(self, items, on_progress=None):
        self.calls.append([len(item.responses) for item in items])
        results = []
        for item in items:
            if "FAIL" in item.prompt[-1]["content"]:
                results.append(ItemResult.failed(len(item.responses), "the judge's answer did not parse",
                                                 {"raw_output": "no idea"}))
                continue
            outputs = [None if r == "bad" else {"score": float(len(r)), "rationale": f"{len(r)} chars"}
                       for r in item.responses]
            errors = ["refused to rate" if r == "bad" else None for r in item.responses]
            results.append(ItemResult(outputs, errors, {"raw_output": f"rated {len(item.responses)}"}))
        return results

    def describe(self):
        return {"model": self.name}


def test_reward_models_judges_and_baselines_are_scorers(llama_dir):
    assert isinstance(RewardModel.from_pretrained(str(llama_dir)), Scorer)
    assert isinstance(LengthScorer(), Scorer)
    assert isinstance(ToyJudge(), Scorer)


def test_the_protocol_knows_nothing_of_torch():
    path = Path(__file__).resolve().parent.parent / "src" / "rewardmill" / "scorer.py"
    code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('scorer', {str(path)!r}); "
            "module = sys.modules['scorer'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(module.Item.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "Item", result.stderr


def test_row_layer_runs_a_judge_shaped_scorer():
    rows = [
        {"id": 0, "instruction": "q", "responses": ["a", "bb", None, "bad"]},
        {"id": 1, "instruction": "FAIL", "responses": ["x"]},
        {"id": 2, "instruction": "q", "responses": []},
        {"id": 3, "instruction": 3, "responses": ["x"]},
        {"id": 4, "instruction": "q", "responses": ["ccc"]},
    ]
    judge = ToyJudge()
    out = list(score_rows(judge, rows))
    assert judge.calls == [[3, 1, 1]]  # one call per chunk; a row's responses travel together
    assert [r["id"] for r in out] == [0, 1, 2, 3, 4]
    assert out[0]["scores"] == [1.0, 2.0, None, None]
    assert out[0]["rationale"] == ["1 chars", "2 chars", None, None] and out[0]["raw_output"] == "rated 3"
    assert out[0]["error"] == "row 0: responses[2] must be a string, got null; row 0: responses[3]: refused to rate"
    assert out[1]["scores"] == [None] and out[1]["raw_output"] == "no idea"
    assert out[1]["error"] == "row 1: the judge's answer did not parse"
    assert out[2]["scores"] == [] and out[2]["error"] is None
    assert out[3]["scores"] is None and out[3]["raw_output"] is None
    assert out[3]["error"] == "row 3: field 'instruction' must be a string, got int"
    assert out[4]["scores"] == [3.0] and out[4]["error"] is None


def test_rows_are_numbered_from_an_offset_and_chunked_once(tmp_path, monkeypatch):
    rows = [{"instruction": "q", "response": "a"}] * 6 + [{"instruction": "q"}]
    out = list(score_rows(LengthScorer(), rows, RowOptions(first_row=100)))
    assert out[6]["error"] == "row 106: missing field 'response'"
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls, writes = [], []
    scorer = LengthScorer()
    real = scorer.score_items
    monkeypatch.setattr(scorer, "score_items", lambda items, on_progress=None: (calls.append(len(items)),
                                                                                 real(items, on_progress))[1])
    from rewardmill.runs.checkpoint import CommittedOutput

    commit = CommittedOutput.commit
    monkeypatch.setattr(CommittedOutput, "commit",
                        lambda self, chunk, *args: (writes.append(len(chunk)), commit(self, chunk, *args))[1])
    summary = score_file(source, tmp_path / "out.jsonl", scorer, RowOptions(chunk_rows=3))
    assert calls == [3, 3] and writes == [3, 3, 1] and summary.rows == 7
    assert summary.errors == ["row 6: missing field 'response'"]


# ------------------------------------------------------------------------------- engine batch step


def test_engine_step_scores_any_batch_a_caller_forms(model_dirs):
    model = RewardModel.from_pretrained(str(model_dirs["gemma"]))
    convs = conversations(10, seed=4)
    encoded = [model.adapter.encode(c) for c in convs]
    want = chat_reference(model_dirs["gemma"], convs)
    engine = Engine(model.adapter, EngineOptions(batch_size=4))
    close([r["score"] for r in engine.run(encoded)], want)
    # A server's batcher forms its own batches (here: arrival order, mixed lengths) and drives the step.
    got = [None] * len(convs)
    for batch in ([0, 5, 9], [1, 2], [3, 4, 6, 7, 8]):
        for index, result in zip(batch, engine.step([encoded[i] for i in batch])):
            got[index] = result["score"]
    close(got, want)


# ---------------------------------------------------------------------------------- per-row shapes


def test_conversation_is_optional_per_row(tmp_path, model_dirs):
    """Seed 000: a row without a conversation (missing or null) is scored from instruction + response."""
    directory = model_dirs["qwen2"]
    convs = conversations(6, seed=5)
    pairs = [[{"role": "user", "content": Q}, {"role": "assistant", "content": a}] for a in ("Paris.", "Lyon?")]
    rows = [
        {"id": 0, "conversation": convs[0], "instruction": None, "response": None},
        {"id": 1, "conversation": None, "instruction": Q, "response": "Paris."},
        {"id": 2, "conversation": convs[1], "instruction": None, "response": None},
        {"id": 3, "conversation": None, "instruction": Q, "response": "Lyon?"},
        {"id": 4, "conversation": None, "instruction": None, "response": None},
    ]
    want = chat_reference(directory, [convs[0], pairs[0], convs[1], pairs[1]])
    for fmt in ("jsonl", "parquet", "dataset", "jsonl-sparse"):
        source = tmp_path / f"in-{fmt}" if fmt == "dataset" else tmp_path / f"in-{fmt}.{fmt.split('-')[0]}"
        if fmt == "jsonl":
            source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif fmt == "jsonl-sparse":  # the key is simply absent on instruction rows
            source.write_text("".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows))
        elif fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), source)
        else:
            import datasets

            datasets.Dataset.from_list(rows).save_to_disk(str(source))
        out = tmp_path / f"out-{fmt}.jsonl"
        result = runner.invoke(app, ["score", str(source), "-m", str(directory), "-o", str(out), "--batch-size", "2"])
        assert result.exit_code == 0, (fmt, result.output)
        got = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in got] == [0, 1, 2, 3, 4]
        close([r["score"] for r in got[:4]], want)
        assert all(r["error"] is None for r in got[:4])
        assert got[4]["score"] is None and got[4]["error"] == "row 4: missing field 'conversation'"


def distilabel_conversation(row: dict) -> list:
    """distilabel 1.5.3's RewardModelScore._prepare_conversation, written out: the pair wins when both are there."""
    if "instruction" in row and "response" in row:
        return [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["response"]}]
    return row["conversation"]


def test_a_row_with_both_a_pair_and_a_conversation_is_scored_as_the_pair(model_dirs):
    """Seed 000: distilabel scores instruction + response when a row holds them and a conversation."""
    directory = model_dirs["qwen2"]
    conv = conversations(1, seed=7)[0]
    rows = [
        {"conversation": conv, "instruction": Q, "response": "Paris."},  # the first row: both
        {"conversation": conv},
        {"conversation": conv, "instruction": Q, "response": ""},  # an empty response is a response
        {"instruction": Q, "response": "Lyon?", "conversation": None},
    ]
    want = chat_reference(directory, [distilabel_conversation({k: v for k, v in r.items() if v is not None})
                                      for r in rows])
    got = list(score_rows(RewardModel.from_pretrained(str(directory)), rows))
    assert [r["error"] for r in got] == [None] * 4
    close([r["score"] for r in got], want)
    assert got[0]["score"] != pytest.approx(got[1]["score"], abs=1e-3)  # the two shapes really differ here
    from rewardmill import Shape

    forced = list(score_rows(LengthScorer(), rows[:1], RowOptions(shape=Shape.conversation)))
    assert forced[0]["score"] == len(conv[-1]["content"]) != len("Paris.")


@pytest.mark.parametrize("family", ["qwen2", "bert"])
def test_an_empty_response_is_scored_not_refused(model_dirs, family):
    """RewardBench scores an empty answer; so does rewardmill, for chat-template and pair models alike."""
    model = RewardModel.from_pretrained(str(model_dirs[family]))
    rows = [{"instruction": Q, "response": ""},
            {"conversation": [{"role": "user", "content": Q}, {"role": "assistant", "content": ""}]},
            {"instruction": Q, "responses": ["", "Paris."]}]
    out = list(score_rows(model, rows[:2])) + list(score_rows(model, rows[2:]))
    assert [r["error"] for r in out] == [None] * 3
    assert isinstance(out[0]["score"], float) and out[0]["score"] == pytest.approx(out[1]["score"], abs=1e-5)
    assert out[2]["scores"][0] == pytest.approx(out[0]["score"], abs=1e-5)


def test_instruction_and_generations_rows_are_rated_like_messages_rows():
    """distilabel's UltraFeedback inputs (instruction + generations) fill `ratings`, and may mix with messages rows."""
    rows = [{"instruction": Q, "generations": ["Paris.", "Lyon"]},
            {"messages": [{"role": "user", "content": Q}], "generations": ["Paris"]},
            {"instruction": Q, "generations": None}]
    out = list(score_rows(LengthScorer(), rows))
    assert [r["ratings"] for r in out] == [[6.0, 4.0], [5.0], None]
    assert out[2]["error"] == "row 2: missing field 'generations'"
    assert "scores" not in out[0] and "score" not in out[0]


def test_a_forced_shape_still_applies_to_every_row():
    rows = [{"conversation": [{"role": "user", "content": Q}, {"role": "assistant", "content": "Paris."}]},
            {"instruction": Q, "response": "Paris."}]
    from rewardmill import Shape

    out = list(score_rows(LengthScorer(), rows, RowOptions(shape=Shape.conversation)))
    assert out[0]["score"] == 6.0 and out[1]["error"] == "row 1: missing field 'conversation'"
    mixed = list(score_rows(LengthScorer(), rows))
    assert [r["score"] for r in mixed] == [6.0, 6.0]


# --------------------------------------------------------------------------------- grouped options


def test_options_are_checked_before_any_weights_load(llama_dir, monkeypatch):
    import rewardmill.reward_models.model

    def never(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(rewardmill.reward_models.model, "load_model", never)
    with pytest.raises(OptionsError, match="--objectives does not apply to classifier models; it applies to multi-objective"):
        RewardModel.from_pretrained(str(llama_dir), objectives=True)
    with pytest.raises(OptionsError, match="unknown option 'alhpa'"):
        RewardModel.from_pretrained(str(llama_dir), alhpa=3)


def test_grouped_options_api(bert_dir):
    from rewardmill import CpuOptions, LoadOptions, TextOptions
    from rewardmill.reward_models.family_options import ClassifierOptions, PairOptions

    model = RewardModel.load(str(bert_dir), load=LoadOptions(dtype="float32"), text=TextOptions(max_length=64),
                             family=PairOptions(alpha=2.0, token_type_ids=False),
                             engine=EngineOptions(batch_size=2), cpu=CpuOptions(kernel="torch"))
    assert model.adapter.alpha == 2.0 and not model.adapter.use_token_type_ids and model.adapter.max_length == 64
    assert model.engine_options.batch_size == 2 and model.cpu_choice.kernel == "torch"
    with pytest.raises(OptionsError, match="--probabilities does not apply to pair models"):
        RewardModel.load(str(bert_dir), family=ClassifierOptions(probabilities=True))


def test_the_cli_hands_every_model_flag_to_the_api(tmp_path, llama_dir, monkeypatch):
    """Each flag must arrive in the option objects: none may be dropped by a renamed parameter."""
    import rewardmill.reward_models.model

    seen = {}

    def capture(name, **groups):
        seen.update(groups, name=name)
        raise OptionsError("captured")

    monkeypatch.setattr(rewardmill.reward_models.model.RewardModel, "load", staticmethod(capture))
    quirks = tmp_path / "q.json"
    quirks.write_text("[]")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "q", "response": "a"}) + "\n")
    flags = ["--kind", "pair", "--revision", "r1", "--dtype", "bfloat16", "--device", "cpu", "--device-map", "auto",
             "--trust-remote-code", "--token", "hf_x", "--attn-implementation", "eager", "--max-length", "77",
             "--truncation", "left", "--chat-template", "T", "--label", "good", "--alpha", "2.5",
             "--no-token-type-ids", "--padding-side", "left", "--reward-token-id", "9", "--model-kwarg", "k=1",
             "--quirks", str(quirks), "--all-labels", "--probabilities", "--objectives", "--gating",
             "--score-token", "last-token", "--batch-size", "3", "--max-tokens-per-batch", "99", "--threads", "1", "--cpu-kernel", "onednn"]
    result = runner.invoke(app, ["score", str(source), "-o", str(tmp_path / "o.jsonl"), "-m", "some/model", *flags])
    assert result.exit_code == 2 and "captured" in result.output
    load, text, engine, cpu = seen["load"], seen["text"], seen["engine"], seen["cpu"]
    assert (seen["name"], seen["kind"], seen["quirks"]) == ("some/model", "pair", quirks)
    assert (load.revision, load.dtype, load.device, load.device_map, load.trust_remote_code, load.token,
            load.attn_implementation) == ("r1", "bfloat16", "cpu", "auto", True, "hf_x", "eager")
    assert (text.max_length, text.truncation) == (77, "left")
    assert (engine.batch_size, engine.max_tokens_per_batch) == (3, 99)
    assert (cpu.threads, cpu.kernel) == (1, "onednn")
    assert seen["family"] == {
        "chat_template": "T", "label": "good", "alpha": 2.5, "token_type_ids": False, "padding_side": "left",
        "reward_token_id": 9, "model_kwargs": {"k": 1}, "all_labels": True, "probabilities": True,
        "objectives": True, "gating": True, "score_token": "last-token",
    }


# ------------------------------------------------------------------------------------ the registry


def test_the_registry_is_the_list_of_adapters():
    from rewardmill.reward_models.adapters import ADAPTERS, KINDS
    from rewardmill.reward_models.family_options import FamilyOptions
    from rewardmill.reward_models.spec import KIND_CHOICES

    assert KINDS == tuple(a.kind for a in ADAPTERS) and len(set(KINDS)) == len(KINDS)
    assert KIND_CHOICES == ("auto", *KINDS)
    for adapter in ADAPTERS:
        assert adapter.auto_classes and issubclass(adapter.Options, FamilyOptions)


def test_seed_001_model_is_recognised_under_any_name(tmp_path):
    directory = remote_models.build_seed001_fork(tmp_path / "RewardModelPT-fork")
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    convs = conversations(12, seed=6)
    with torch.no_grad():
        want = []
        for conv in convs:
            prompt = conv[0]["content"] if len(conv) == 2 else "\n\n".join(
                f"{m['role'].capitalize()}: {m['content']}" for m in conv[:-1])
            enc = tok(prompt, conv[-1]["content"], return_token_type_ids=False, return_tensors="pt")
            want.append(model(**enc, alpha=10).item())
    order = list(range(len(convs)))
    random.Random(2).shuffle(order)
    for batch_size in (1, 3, 16):
        rm = RewardModel.from_pretrained(str(directory), trust_remote_code=True, alpha=10, batch_size=batch_size)
        assert rm.adapter.kind == "pair" and rm.adapter.alpha_in_forward and not rm.adapter.use_token_type_ids
        close(rm.score([convs[i] for i in order]), [want[i] for i in order])
    assert "config subclasses BertConfig" in rm.describe()["detected"]
    assert "builds BertModel inside" in rm.describe()["detected"]


# ---------------------------------------------------------------------------------- length baseline


def test_length_baseline_through_the_cli_on_every_shape(tmp_path):
    rows = [
        {"id": 0, "conversation": [{"role": "user", "content": Q}, {"role": "assistant", "content": "Paris, of course."}]},
        {"id": 1, "instruction": Q, "response": "Paris 🙂"},
        {"id": 2, "conversation": [{"role": "user", "content": Q}]},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for out in (tmp_path / "out.jsonl", tmp_path / "out.parquet"):
        result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out)])
        assert result.exit_code == 0, result.output
        got = pq.read_table(out).to_pylist() if out.suffix == ".parquet" else [
            json.loads(line) for line in out.read_text().splitlines()]
        assert [r["score"] for r in got] == [len("Paris, of course."), len("Paris 🙂"), None]
        assert "must end with an assistant turn" in got[2]["error"]
    listed = tmp_path / "list.jsonl"
    listed.write_text(json.dumps({"messages": [{"role": "user", "content": Q}], "generations": ["ab", "abcd"]}) + "\n")
    result = runner.invoke(app, ["score", str(listed), "-m", "length", "-o", str(tmp_path / "l.jsonl")])
    assert result.exit_code == 0 and json.loads((tmp_path / "l.jsonl").read_text())["ratings"] == [2.0, 4.0]
    refused = runner.invoke(app, ["score", str(source), "-m", "length", "--alpha", "2", "--batch-size", "4",
                                  "-o", str(tmp_path / "x.jsonl")])
    assert refused.exit_code == 2 and "baseline runs no model" in refused.output
    assert "--alpha" in refused.output and "--batch-size" in refused.output
    shown = runner.invoke(app, ["inspect", "length"])
    assert shown.exit_code == 0 and "number of characters of the response" in shown.output
