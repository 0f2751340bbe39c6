"""Failures while scoring (issue 17, in part): a batch that raises is bisected so that only the failing row gets an
error and the others are scored as alone; a batch that runs out of memory is split and the token budget lowered."""

import warnings

import pytest
import torch
from sample_data import conversations

from rewardmill import RewardModel, score_rows

CONVS = conversations(12, seed=21)


@pytest.fixture
def model(model_dirs):
    return RewardModel.from_pretrained(str(model_dirs["qwen2"]), batch_size=16)


def reference(model_dirs):
    return RewardModel.from_pretrained(str(model_dirs["qwen2"]), batch_size=1).score(CONVS)


def test_a_row_that_makes_the_model_raise_fails_alone(model, model_dirs, monkeypatch):
    want = reference(model_dirs)
    bad = model.adapter.encode(CONVS[5]).input_ids
    forward = model.adapter.forward
    calls = []

    def flaky(batch):
        calls.append(len(batch.items))
        if any(item.input_ids == bad for item in batch.items):
            raise ValueError("boom in the model's code")
        return forward(batch)

    monkeypatch.setattr(model.adapter, "forward", flaky)
    rows = list(score_rows(model, [{"id": i, "conversation": c} for i, c in enumerate(CONVS)]))
    assert rows[5]["score"] is None
    assert rows[5]["error"].startswith("row 5: scoring failed (") and "ValueError: boom in the model's code" in rows[5]["error"]
    for i, row in enumerate(rows):
        if i != 5:
            assert row["error"] is None and row["score"] == pytest.approx(want[i], abs=1e-5)
    assert 1 in calls and max(calls) > 1  # bisected down to the single bad row


def test_out_of_memory_splits_the_batch_and_lowers_the_budget(model_dirs, monkeypatch):
    want = reference(model_dirs)
    model = RewardModel.from_pretrained(str(model_dirs["qwen2"]), batch_size=16, min_fill=0.0)  # wide batches
    forward = model.adapter.forward
    seen = []
    before = model.engine.options.max_tokens_per_batch

    def small_memory(batch):
        seen.append(len(batch.items))
        if len(batch.items) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(batch)

    monkeypatch.setattr(model.adapter, "forward", small_memory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = model.score(CONVS)
    assert got == pytest.approx(want, abs=1e-5)
    assert max(seen) > 2 and model.engine.options.max_tokens_per_batch < before
    assert sum("ran out of memory" in str(w.message) for w in caught) == 1  # said once


def test_a_row_too_big_even_alone_gets_an_error(model, monkeypatch):
    longest = max(range(len(CONVS)), key=lambda i: len(model.adapter.encode(CONVS[i]).input_ids))
    limit = len(model.adapter.encode(CONVS[longest]).input_ids)
    forward = model.adapter.forward

    def tight(batch):
        if batch.input_ids.shape[1] >= limit:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")
        return forward(batch)

    monkeypatch.setattr(model.adapter, "forward", tight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = list(score_rows(model, [{"conversation": c} for c in CONVS]))
    assert "out of memory even alone" in rows[longest]["error"]
    assert sum(r["error"] is not None for r in rows) == sum(
        len(model.adapter.encode(c).input_ids) >= limit for c in CONVS)


def test_the_cli_exits_non_zero_after_failures_while_scoring(tmp_path, model_dirs, monkeypatch):
    import json

    from typer.testing import CliRunner

    from rewardmill.cli import app
    from rewardmill.reward_models.adapters.classifier import ClassifierAdapter

    forward = ClassifierAdapter.forward

    def flaky(self, batch):
        if any(len(item) > 150 for item in batch.items):
            raise ValueError("the model broke")
        return forward(self, batch)

    monkeypatch.setattr(ClassifierAdapter, "forward", flaky)
    rows = [{"instruction": "q", "response": "ok"}, {"instruction": "q", "response": "long " * 40}, {"conversation": []}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["score", str(source), "-m", str(model_dirs["qwen2"]), "-o", str(tmp_path / "out.jsonl")]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 3 and "1 failure while scoring, by reason:" in failed.output
    assert "1 x scoring failed: ValueError: the model broke" in failed.output
    got = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert got[0]["error"] is None and "the model broke" in got[1]["error"] and "empty conversation" in got[2]["error"]
    assert CliRunner().invoke(app, [*args, "--allow-errors"]).exit_code == 0
    monkeypatch.setattr(ClassifierAdapter, "forward", forward)
    assert CliRunner().invoke(app, args).exit_code == 0  # an error in a row's content is not a failure while scoring


def test_the_lowered_budget_is_the_engines_own_and_comes_back_only_when_restored(model_dirs, monkeypatch):
    from rewardmill import EngineOptions
    from rewardmill.reward_models.engines.transformers_engine import Engine

    options = EngineOptions(batch_size=16, min_fill=0.0)
    model = RewardModel.load(str(model_dirs["qwen2"]), engine=options)
    configured = model.engine.options.max_tokens_per_batch
    forward = model.adapter.forward

    def small_memory(batch):
        if len(batch.items) > 2:
            raise MemoryError("out of memory")
        return forward(batch)

    monkeypatch.setattr(model.adapter, "forward", small_memory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.score(CONVS)
    lowered = model.engine.options.max_tokens_per_batch
    assert lowered < configured
    assert options == EngineOptions(batch_size=16, min_fill=0.0)  # no options object was changed
    assert Engine(model.adapter, options).options.max_tokens_per_batch == configured  # nor another engine's budget
    monkeypatch.setattr(model.adapter, "forward", forward)
    model.score(CONVS)
    assert model.engine.options.max_tokens_per_batch == lowered  # a run keeps it lowered to its end
    steps = []
    while model.engine.restore_budget():
        steps.append(model.engine.options.max_tokens_per_batch)
    assert steps == sorted(steps) and steps[0] > lowered and steps[-1] == configured  # given back step by step
