"""Long judge runs (issue 28, point 9): progress lines where stderr is not a terminal, an answer cut off at
--max-new-tokens is that row's error with that reason (over HTTP and with the local backend), and the local judge
takes --device, --dtype and --batch-size like the reward models."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
import toy_models
from fake_judge_server import FakeJudgeServer
from typer.testing import CliRunner

from rewardmill.cli import app
from rewardmill.errors import OptionsError
from rewardmill.judges import GenerationSettings
from rewardmill.judges.spec import JudgeSpec
from rewardmill.runs import job as pipeline

runner = CliRunner()


def quality_rows(path, n: int = 12) -> None:
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "responses": ["a", "bb " * (i % 4 + 1)]}) + "\n"
                            for i in range(n)))


def test_progress_lines_where_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_SECONDS", 0.0)
    source = tmp_path / "in.jsonl"
    quality_rows(source)
    with FakeJudgeServer() as server:
        result = runner.invoke(app, ["judge", str(source), "--task", "quality", "-m", "toy", "--base-url", server.url,
                                     "-o", str(tmp_path / "out.jsonl"), "--chunk-rows", "4"])
    assert result.exit_code == 0, result.output
    lines = [line.split(",")[0] for line in result.output.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 3 and lines[-1] == "progress: 12/12 rows (100%)"
    counts = [float(line.split()[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and all(line.endswith("rows (%d%%)" % round(100 * c / 12)) for line, c in
                                            zip(lines, counts))
    quiet = runner.invoke(app, ["judge", str(source), "--task", "quality", "-m", "toy", "--base-url", "http://x/v1",
                                "-o", str(tmp_path / "quiet.jsonl"), "--no-progress", "--backend", "http"])
    assert "progress: " not in quiet.output


def test_an_answer_cut_off_at_max_new_tokens_is_that_rows_error(tmp_path):
    source = tmp_path / "in.jsonl"
    quality_rows(source, 4)
    with FakeJudgeServer() as server:
        args = ["judge", str(source), "--task", "quality", "-m", "toy", "--base-url", server.url]
        cut = runner.invoke(app, [*args, "-o", str(tmp_path / "cut.jsonl"), "--max-new-tokens", "4"])
        whole = runner.invoke(app, [*args, "-o", str(tmp_path / "whole.jsonl")])
    assert cut.exit_code == 3 and whole.exit_code == 0, cut.output + whole.output
    rows = [json.loads(line) for line in (tmp_path / "cut.jsonl").read_text().splitlines()]
    assert [r["error"] for r in rows] == [f"row {i}: the judge's answer was cut off at --max-new-tokens 4 before it "
                                          "finished (raise --max-new-tokens)" for i in range(4)]
    assert all(r["scores"] == [None, None] and r["raw_output"] == "Here is my ranking.\n\n**[1]" for r in rows)
    assert "answers cut off at the token limit 4" in cut.output
    assert all(json.loads(line)["error"] is None for line in (tmp_path / "whole.jsonl").read_text().splitlines())


def test_a_run_whose_every_rating_is_null_writes_parquet(tmp_path):
    """Every answer cut off: `ratings` is a list of nulls in every row (Arrow's list<null>) in every chunk."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"q{i}", "generations": ["a", "bb"]}) + "\n"
                              for i in range(5)))
    with FakeJudgeServer() as server:
        args = ["judge", str(source), "--task", "ultrafeedback", "-m", "toy", "--base-url", server.url,
                "--max-new-tokens", "2", "--chunk-rows", "2"]
        results = {fmt: runner.invoke(app, [*args, "-o", str(tmp_path / f"out.{fmt}")]) for fmt in ("jsonl", "parquet")}
    assert [result.exit_code for result in results.values()] == [3, 3], results["parquet"].output
    assert not (tmp_path / "out.parquet.partial").exists()
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("ratings").to_pylist() == [[None, None]] * 5
    assert table.to_pylist() == [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


def test_log_probability_scoring_says_when_the_answer_was_cut_off_before_its_verdict(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "q", "response": "four"}) + "\n")
    with FakeJudgeServer() as server:  # it answers "A reasonable answer. Rating: [[4]]", cut after 2 words
        result = runner.invoke(app, ["judge", str(source), "--task", "rating", "-m", "toy", "--base-url", server.url,
                                     "--scoring", "logprobs", "--max-new-tokens", "2", "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 3, result.output
    (row,) = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert row["error"] == ("row 0: log-probability scoring failed: the judge's answer was cut off at "
                            "--max-new-tokens 2 before it reached 'Rating: [[' (raise --max-new-tokens)")


@pytest.fixture(scope="module")
def toy_generator(tmp_path_factory):
    return toy_models.build_llama_generator(tmp_path_factory.mktemp("toy-judge") / "llama")


def test_a_long_local_chunk_shows_progress_as_its_batches_finish(toy_generator, tmp_path, monkeypatch):
    """One chunk of 8 rows, generated 2 at a time: a progress line after each batch, not only at the chunk's end."""
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_SECONDS", 0.0)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"question {i}", "response": "answer " * i}) + "\n"
                              for i in range(8)))
    result = runner.invoke(app, ["judge", str(source), "--task", "rating", "-m", str(toy_generator), "-o",
                                 str(tmp_path / "out.jsonl"), "--chunk-rows", "8", "--batch-size", "2",
                                 "--max-new-tokens", "2", "--retries", "0", "--allow-errors"])
    assert result.exit_code == 0, result.output
    lines = [line.split(",")[0] for line in result.output.splitlines() if line.startswith("progress: ")]
    assert lines == [f"progress: {n}/8 rows ({100 * n // 8}%)" for n in (0, 2, 4, 6, 8)]


def test_the_local_backend_says_when_it_stopped_at_the_limit(toy_generator):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardmill.judges.local import TransformersBackend

    conversations = [[{"role": "user", "content": f"Rate answer {i}."}] for i in range(3)]
    backend = TransformersBackend(str(toy_generator), GenerationSettings(max_tokens=6), batch_size=2)
    got = backend.complete(conversations)
    # reference: one prompt at a time, greedy, and whether an end-of-sequence token came within the 6 tokens
    tok = AutoTokenizer.from_pretrained(toy_generator)
    model = AutoModelForCausalLM.from_pretrained(toy_generator).eval()
    for conversation, completion in zip(conversations, got):
        ids = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)
        with torch.no_grad():
            out = model.generate(torch.tensor([ids["input_ids"]]), max_new_tokens=6, do_sample=False,
                                 pad_token_id=tok.eos_token_id)[0, len(ids["input_ids"]):].tolist()
        finished = tok.eos_token_id in out
        assert completion.cut_off == (not finished)
    assert any(c.cut_off for c in got)


def test_the_local_judge_takes_device_dtype_and_batch_size(toy_generator, tmp_path, monkeypatch):
    spec = JudgeSpec("rating", str(toy_generator), backend="transformers", device="cpu", dtype="bfloat16",
                     batch_size=2, settings=GenerationSettings(max_tokens=2))
    judge = spec.scorer()
    assert next(judge.backend.model.parameters()).dtype == torch.bfloat16
    assert judge.backend.device.type == "cpu" and judge.backend.batching.batch_size == 2
    seen: list[int] = []
    generate = judge.backend._generate
    monkeypatch.setattr(judge.backend, "_generate", lambda prompts: seen.append(len(prompts)) or generate(prompts))
    judge.backend.complete([[{"role": "user", "content": f"x{i}"}] for i in range(5)])
    assert seen and max(seen) <= 2 and sum(seen) == 5
    with pytest.raises(OptionsError, match=r"--dtype, --batch-size applies to a judge run here"):
        JudgeSpec("rating", "m", base_url="http://127.0.0.1:9/v1", dtype="bfloat16", batch_size=2).scorer()
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "q", "response": "a"}) + "\n")
    captured = {}
    monkeypatch.setattr(JudgeSpec, "scorer", lambda self: captured.update(vars(self)) or (_ for _ in ()).throw(
        OptionsError("captured")))
    result = runner.invoke(app, ["judge", str(source), "--task", "rating", "-m", "m", "-o", str(tmp_path / "o.jsonl"),
                                 "--device", "cpu", "--dtype", "bfloat16", "--batch-size", "3"])
    assert "captured" in result.output
    assert (captured["device"], captured["dtype"], captured["batch_size"]) == ("cpu", "bfloat16", 3)


def capture_judge_spec(monkeypatch) -> dict:
    """JudgeSpec.scorer records the spec's fields and stops the command there (exit 2, 'captured')."""
    captured: dict = {}

    def scorer(self):
        captured.update(vars(self))
        raise OptionsError("captured")

    monkeypatch.setattr(JudgeSpec, "scorer", scorer)
    return captured


LOCAL_FLAGS = ["--device", "cpu", "--dtype", "bfloat16", "--batch-size", "3"]


def test_dpo_and_eval_hand_device_dtype_and_batch_size_to_their_local_judge(tmp_path, monkeypatch):
    gens = tmp_path / "gens.jsonl"
    gens.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}], "generations": ["a", "b"]}) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    runs = {
        "dpo": ["dpo", str(gens), "--judge-task", "ultrafeedback", "-m", "judge", "-o", str(tmp_path / "d.jsonl")],
        "eval": ["eval", str(pairs), "-m", "length", "--judge-task", "pairwise", "--judge-model", "judge", "-o",
                 str(tmp_path / "report")],
    }
    for command, args in runs.items():
        captured = capture_judge_spec(monkeypatch)
        result = runner.invoke(app, [*args, *LOCAL_FLAGS])
        assert "error: captured" in result.output, (command, result.output)
        assert (captured["model"], captured["base_url"], captured["device"], captured["dtype"],
                captured["batch_size"]) == ("judge", None, "cpu", "bfloat16", 3), command


def test_model_flags_no_scorer_can_take_are_refused(tmp_path, monkeypatch, llama_dir):
    gens = tmp_path / "gens.jsonl"
    gens.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}], "generations": ["a", "b"]}) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    dpo = ["dpo", str(gens), "--judge-task", "ultrafeedback", "-m", "judge", "-o", str(tmp_path / "d.jsonl")]
    eval_ = ["eval", str(pairs), "-m", "length", "-o", str(tmp_path / "report")]
    judge = ["--judge-task", "pairwise", "--judge-model", "judge"]
    refused = {
        (*dpo, "--kind", "classifier"): "error: --judge-task rates with an LLM judge (which takes --device, --dtype "
                                        "and --batch-size), not a reward model, so these options do not apply to it: "
                                        "--kind",
        (*dpo, "--base-url", "http://127.0.0.1:9/v1", "--dtype", "bfloat16"):
            "error: --dtype applies to a judge run here with transformers, not to --backend http",
        (*eval_, "--device", "cpu"): "error: no reward model is evaluated (baselines take no model options), so "
                                     "these options do not apply to it: --device",
        (*eval_, *judge, "--max-length", "8", "--batch-size", "2"):
            "error: no reward model is evaluated (baselines take no model options, a local judge only --device, "
            "--dtype and --batch-size), so these options do not apply to it: --max-length",
    }
    for args, message in refused.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    # a reward model takes every model flag (the length baseline beside it does not refuse them); a judge over
    # HTTP is handed none of them
    captured = capture_judge_spec(monkeypatch)
    result = runner.invoke(app, [*eval_, *judge, "--base-url", "http://127.0.0.1:9/v1", "--dtype", "bfloat16",
                                 "-m", str(llama_dir), "--threads", "1", "--cpu-kernel", "torch"])
    assert "error: captured" in result.output, result.output
    assert (captured["base_url"], captured["device"], captured["dtype"]) == ("http://127.0.0.1:9/v1", None, "default")
