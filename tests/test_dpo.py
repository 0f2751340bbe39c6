"""DPO formatting (seed 004), pair strategies, the skip and error cases, and `rewardmill dpo` end to end."""

import hashlib
import json
import math

import pytest
from typer.testing import CliRunner

from rewardmill.cli import app
from rewardmill.preferences.formatting import SKIP_FEW, SKIP_TIE, DPOOptions, DPOSummary, format_dpo

runner = CliRunner()
Q = "What's 2+2?"


def test_seed_004_example_exactly():
    row = {"messages": [{"role": "user", "content": Q}], "generations": ["4", "5", "6"], "ratings": [1, 0, -1]}
    (out,) = list(format_dpo([row]))
    assert out == {
        "messages": [{"role": "user", "content": Q}],
        "generations": ["4", "5", "6"],
        "ratings": [1, 0, -1],
        "prompt": Q,
        "prompt_id": "7762ecf17ad41479767061a8f4a7bfa3b63d371672af5180872f9b82b4cd4e29",
        "chosen": [{"role": "user", "content": Q}, {"role": "assistant", "content": "4"}],
        "chosen_rating": 1,
        "rejected": [{"role": "user", "content": Q}, {"role": "assistant", "content": "6"}],
        "rejected_rating": -1,
    }


def test_text_variant_with_and_without_a_system_prompt_and_models():
    rows = [{"instruction": Q, "generations": ["4", "5"], "ratings": [2, 1], "generation_models": ["m1", "m2"]},
            {"instruction": Q, "system_prompt": "Be brief.", "generations": ["4", "5"], "ratings": [1, 2]}]
    plain, system = list(format_dpo(rows))
    assert plain["chosen"] == [{"role": "user", "content": Q}, {"role": "assistant", "content": "4"}]
    assert (plain["chosen_model"], plain["rejected_model"]) == ("m1", "m2")
    assert system["chosen"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": Q},
                                {"role": "assistant", "content": "5"}]
    assert system["prompt"] == Q and system["prompt_id"] == plain["prompt_id"]  # the hash is of the user message
    assert "chosen_model" not in system


def test_multi_turn_prompt_is_the_first_user_message():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"}]
    (out,) = list(format_dpo([{"messages": messages, "generations": ["a", "b"], "ratings": [1, 0]}]))
    assert out["prompt"] == "first" and out["chosen"][:4] == messages
    assert out["prompt_id"] == hashlib.sha256(b"first").hexdigest()


# distilabel 1.5.3's FormatChatGenerationDPO and FormatTextGenerationDPO (steps/formatting/dpo.py), written out as an
# independent reference: the first user message is the prompt; chosen/rejected are the first max/min of the ratings;
# a text row gets a system message only for a non-empty string system_prompt.
def distilabel_chat_dpo(item: dict) -> dict:
    item = dict(item)
    item["prompt"] = next((turn["content"] for turn in item["messages"] if turn["role"] == "user"), None)
    item["prompt_id"] = hashlib.sha256(item["prompt"].encode("utf-8")).hexdigest()
    return _distilabel_select(item, item["messages"])


def distilabel_text_dpo(item: dict) -> dict:
    item = dict(item)
    messages = [{"role": "user", "content": item["instruction"]}]
    if "system_prompt" in item and isinstance(item["system_prompt"], str) and len(item["system_prompt"]) > 0:
        messages.insert(0, {"role": "system", "content": item["system_prompt"]})
    item["prompt"] = item["instruction"]
    item["prompt_id"] = hashlib.sha256(item["prompt"].encode("utf-8")).hexdigest()
    return _distilabel_select(item, messages)


def _distilabel_select(item: dict, messages: list) -> dict:
    chosen_idx = max(enumerate(item["ratings"]), key=lambda x: x[1])[0]
    item["chosen"] = messages + [{"role": "assistant", "content": item["generations"][chosen_idx]}]
    if "generation_models" in item:
        item["chosen_model"] = item["generation_models"][chosen_idx]
    item["chosen_rating"] = item["ratings"][chosen_idx]
    rejected_idx = min(enumerate(item["ratings"]), key=lambda x: x[1])[0]
    item["rejected"] = messages + [{"role": "assistant", "content": item["generations"][rejected_idx]}]
    if "generation_models" in item:
        item["rejected_model"] = item["generation_models"][rejected_idx]
    item["rejected_rating"] = item["ratings"][rejected_idx]
    return item


CHAT_ROWS = [
    {"messages": [{"role": "user", "content": Q}], "generations": ["4", "5", "6"], "ratings": [1, 0, -1]},
    {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": "Red."}, {"role": "user", "content": "Another one?"}],
     "generations": ["Blue.", "Red.", "Green, obviously."], "ratings": [4, 1, 4], "generation_models": ["a", "b", "c"]},
    {"messages": [{"role": "user", "content": "héllo ✓"}, {"role": "assistant", "content": "hi"},
                  {"role": "user", "content": "héllo ✓"}], "generations": ["x", "y", "z", "w"],
     "ratings": [2.5, 0.5, 7, 0.5]},
]
TEXT_ROWS = [
    {"instruction": Q, "generations": ["4", "5"], "ratings": [2, 1]},
    {"instruction": Q, "system_prompt": "", "generations": ["4", "5"], "ratings": [2, 1]},
    {"instruction": Q, "system_prompt": None, "generations": ["4", "5"], "ratings": [1, 2]},
    {"instruction": Q, "system_prompt": "Be brief.", "generations": ["4", "5", "6"], "ratings": [3, 9, 3],
     "generation_models": ["m1", "m2", "m3"]},
]


@pytest.mark.parametrize("row", CHAT_ROWS + TEXT_ROWS)
def test_dpo_matches_distilabels_formatting(row):
    reference = distilabel_chat_dpo(row) if "messages" in row else distilabel_text_dpo(row)
    (out,) = list(format_dpo([row]))
    assert out == reference


def test_an_empty_system_prompt_adds_no_system_message_and_a_non_string_is_an_error():
    (out,) = list(format_dpo([{"instruction": Q, "system_prompt": "", "generations": ["4", "5"], "ratings": [2, 1]}]))
    assert [m["role"] for m in out["chosen"]] == ["user", "assistant"]
    summary = DPOSummary()
    assert list(format_dpo([{"instruction": Q, "system_prompt": 3, "generations": ["4", "5"], "ratings": [2, 1]}],
                           summary=summary)) == []
    assert summary.errors == ["row 0: field 'system_prompt' must be a string, got int"]


CASES = [
    ({"generations": ["a", "b", "c"], "ratings": [3, 3, 3]}, SKIP_TIE),
    ({"generations": ["a", "b"], "ratings": [2, 1.5]}, None),  # margin 0.5 > 0.4: a pair
    ({"generations": ["a", "b"], "ratings": [2, 1.7]}, SKIP_TIE),  # within --min-margin 0.4
    ({"generations": ["a", "b", "c"], "ratings": [None, 2, 1]}, None),
    ({"generations": ["a", "b", "c"], "ratings": [float("nan"), 2, 1]}, None),
    ({"generations": ["a", "b"], "ratings": [None, 1]}, SKIP_FEW),
    ({"generations": ["a"], "ratings": [5]}, SKIP_FEW),
    ({"generations": ["a", "b"], "ratings": [None, None]}, SKIP_FEW),
    ({"generations": ["a", "b", "c"], "ratings": [1, 2]}, "row 0: 3 generations but 2 ratings"),
    ({"messages": [{"role": "system", "content": "S"}], "generations": ["a", "b"], "ratings": [1, 0]},
     "row 0: field 'messages' has no user message"),
    ({"messages": None, "generations": ["a", "b"], "ratings": [1, 0]}, "row 0: missing field 'messages'"),
]


@pytest.mark.parametrize("row,expected", CASES)
def test_ties_missing_ratings_and_bad_rows(row, expected):
    row = {"messages": [{"role": "user", "content": Q}], **row}
    summary = DPOSummary()
    out = list(format_dpo([row], DPOOptions(min_margin=0.4), summary))
    if expected is None:
        assert len(out) == 1 and out[0]["chosen"] != out[0]["rejected"] and summary.pairs == 1
        assert not (isinstance(out[0]["rejected_rating"], float) and math.isnan(out[0]["rejected_rating"]))
    elif expected in (SKIP_TIE, SKIP_FEW):
        assert out == [] and summary.skipped == {expected: 1}
    else:
        assert out == [] and summary.skipped == {"error": 1} and summary.errors[0].startswith(expected)


def test_first_in_input_order_wins_among_equal_ratings():
    (out,) = list(format_dpo([{"instruction": Q, "generations": ["a", "b", "c", "d"], "ratings": [5, 1, 5, 1]}]))
    assert out["chosen"][-1]["content"] == "a" and out["rejected"][-1]["content"] == "b"


def test_strategies_are_deterministic_and_never_pair_a_tie():
    row = {"instruction": Q, "generations": ["a", "b", "c", "d"], "ratings": [4, 3, 3, 1]}

    def pairs(**options):
        return [(o["chosen"][-1]["content"], o["rejected"][-1]["content"]) for o in format_dpo([row], DPOOptions(**options))]

    assert pairs() == [("a", "d")]
    assert pairs(strategy="all-pairs") == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")]
    assert pairs(strategy="all-pairs", min_margin=1.5) == [("a", "d"), ("b", "d"), ("c", "d")]
    assert pairs(strategy="top-k", k=2) == [("a", "d"), ("b", "d")]
    randoms = [pairs(strategy="best-random", seed=s) for s in range(8)]
    assert all(p[0][0] == "a" and p[0][1] in "bcd" for p in randoms) and len({p[0] for p in randoms}) > 1
    assert randoms == [pairs(strategy="best-random", seed=s) for s in range(8)]  # same seed, same choice


def test_dpo_command_rates_with_a_reward_model_and_writes_a_dataset(tmp_path, model_dirs):
    import datasets
    from test_fidelity import decoder_reference

    rows = [
        {"id": 0, "messages": [{"role": "user", "content": "Capital of France?"}],
         "generations": ["Paris.", "Lyon, I think.", "It is Paris, the capital."]},
        {"id": 1, "instruction": "Say hi", "system_prompt": "Be brief.", "generations": ["hi", "hello there"]},
        {"id": 2, "instruction": "Same", "generations": ["x", "x"]},  # identical answers: a tie, no pair
        {"id": 3, "instruction": "One", "generations": ["only"]},
        {"id": 4, "instruction": "Say bye", "system_prompt": "", "generations": ["bye", "goodbye now"]},
    ]
    source = tmp_path / "gens.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dpo-dataset"
    result = runner.invoke(app, ["dpo", str(source), "-m", str(model_dirs["qwen2"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 rows in, 3 pairs out" in result.output and "tie" in result.output and SKIP_FEW in result.output
    loaded = datasets.load_from_disk(str(out))
    assert loaded.num_rows == 3 and [pair["id"] for pair in loaded] == [0, 1, 4]
    for pair in loaded:
        assert pair["chosen_rating"] > pair["rejected_rating"]
        # the ratings are the model's scores: one-row plain-transformers reference, computed in the test
        want = decoder_reference(model_dirs["qwen2"], [pair["chosen"], pair["rejected"]])
        assert [pair["chosen_rating"], pair["rejected_rating"]] == pytest.approx(want, abs=1e-5)
    assert loaded[1]["chosen"][0] == {"role": "system", "content": "Be brief."}
    assert loaded[2]["chosen"][0]["role"] == "user"  # an empty system_prompt: rated and paired without one


def test_trl_layout_passes_trls_own_checks(tmp_path, model_dirs):
    trl_data = pytest.importorskip("trl.data_utils")
    from transformers import AutoTokenizer

    rows = [{"messages": [{"role": "user", "content": Q}], "generations": ["4", "5"], "ratings": [1, 0]}]
    source = tmp_path / "rated.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "trl.jsonl"
    result = runner.invoke(app, ["dpo", str(source), "--trl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    example = json.loads(out.read_text())
    assert example["prompt"] == [{"role": "user", "content": Q}]
    assert example["chosen"] == [{"role": "assistant", "content": "4"}]
    assert trl_data.is_conversational(example)
    tokenizer = AutoTokenizer.from_pretrained(model_dirs["qwen2"])
    rendered = trl_data.maybe_apply_chat_template(
        {k: example[k] for k in ("prompt", "chosen", "rejected")}, tokenizer)
    assert rendered["prompt"].endswith("<|im_start|>assistant\n") and rendered["chosen"].startswith("4")


def test_format_dpo_takes_keywords():
    row = {"instruction": Q, "generations": ["a", "b", "c"], "ratings": [3, 2, 1]}
    assert len(list(format_dpo([row], strategy="all-pairs"))) == 3


def test_dpo_command_rates_with_a_judge(tmp_path):
    from fake_judge_server import FakeJudgeServer

    rows = [{"id": 0, "messages": [{"role": "user", "content": "Q"}], "generations": ["bb", "a", "cccc"]}]
    source = tmp_path / "gens.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dpo.jsonl"
    with FakeJudgeServer() as server:
        result = runner.invoke(app, ["dpo", str(source), "--judge-task", "ultrafeedback", "-m", "toy-judge",
                                     "--base-url", server.url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    (pair,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert pair["ratings"] == [2.0, 1.0, 3.0]  # the judge's ratings, written before the pairs are chosen
    assert pair["chosen"][-1]["content"] == "cccc" and pair["rejected"][-1]["content"] == "a"


# ------------------------------------------------------------------ an output without a pair

NO_PAIR_ROWS = [  # with --min-margin 1, a tie and a margin within it; with 0, one pair (of the second row)
    {"messages": [{"role": "user", "content": "q0"}], "generations": ["a", "b"], "ratings": [1, 1]},
    {"messages": [{"role": "user", "content": "q1"}], "generations": ["a", "b"], "ratings": [1, 1.5]},
]


def dpo_run(tmp_path, rows: list[dict], output: str, *extra: str):
    source = tmp_path / f"{output}-in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / output
    return runner.invoke(app, ["dpo", str(source), "-o", str(out), *extra]), out


def schema(out):
    import datasets
    import pyarrow.parquet as pq

    if out.suffix == ".parquet":
        return pq.read_schema(out).remove_metadata()
    return datasets.load_from_disk(str(out)).features


@pytest.mark.parametrize("output", ["pairs", "pairs.parquet"])
@pytest.mark.parametrize("trl", [[], ["--trl"]], ids=["plain", "trl"])
def test_no_pair_writes_the_columns_and_types_a_run_with_pairs_writes(tmp_path, output, trl):
    import datasets

    result, out = dpo_run(tmp_path, NO_PAIR_ROWS, output, "--strategy", "all-pairs", "--min-margin", "1", *trl)
    assert result.exit_code == 0, result.output
    assert "2 rows in, 0 pairs out" in result.output and f"{SKIP_TIE}: 2" in result.output
    assert not (tmp_path / f"{output}.partial").exists()
    paired, with_pairs = dpo_run(tmp_path, NO_PAIR_ROWS, "paired" + out.suffix, *trl)
    assert paired.exit_code == 0 and "1 pairs out" in paired.output, paired.output
    assert schema(out) == schema(with_pairs)
    if out.suffix == "":
        loaded = datasets.load_from_disk(str(out))
        assert loaded.num_rows == 0 and loaded.column_names == datasets.load_from_disk(str(with_pairs)).column_names


def test_no_pair_after_rating_with_a_scorer_writes_the_columns_a_run_with_pairs_writes(tmp_path):
    rows = [{"instruction": "q", "generations": ["a", "bbb"]}, {"instruction": "q", "generations": ["a", "b"]}]
    result, out = dpo_run(tmp_path, rows, "pairs", "-m", "length", "--trl", "--min-margin", "5")
    assert result.exit_code == 0 and "2 rows in, 0 pairs out" in result.output, result.output
    paired, with_pairs = dpo_run(tmp_path, rows, "paired", "-m", "length", "--trl")
    assert paired.exit_code == 0 and "1 pairs out" in paired.output, paired.output
    assert schema(out) == schema(with_pairs) and "ratings" in schema(out)


def test_no_pair_in_csv_is_a_header_with_the_columns_a_run_with_pairs_writes(tmp_path):
    import csv

    rows = [{"instruction": "q", "generations": ["a", "bbb"], "id": 7}]
    result, out = dpo_run(tmp_path, rows, "pairs.csv", "-m", "length", "--min-margin", "5")
    assert result.exit_code == 0 and "1 rows in, 0 pairs out" in result.output, result.output
    paired, with_pairs = dpo_run(tmp_path, rows, "paired.csv", "-m", "length")
    assert paired.exit_code == 0 and "1 pairs out" in paired.output, paired.output
    header = next(csv.reader(with_pairs.open(encoding="utf-8")))
    assert "id" in header and "chosen" in header
    assert out.read_text(encoding="utf-8").splitlines() == [",".join(header)]
    pair_columns = ["prompt", "prompt_id", "chosen", "chosen_rating", "rejected", "rejected_rating"]
    for rows, expected in (([], pair_columns), (NO_PAIR_ROWS, ["messages", "generations", "ratings", *pair_columns])):
        result, out = dpo_run(tmp_path, rows, "pairs.csv", "--min-margin", "1", "--overwrite")
        assert result.exit_code == 0, result.output
        assert out.read_text(encoding="utf-8").splitlines() == [",".join(expected)]


@pytest.mark.parametrize("output", ["pairs", "pairs.parquet"])
def test_an_input_without_rows_gives_the_pair_columns(tmp_path, output):
    import datasets
    import pyarrow.parquet as pq

    result, out = dpo_run(tmp_path, [], output)
    assert result.exit_code == 0 and "0 rows in, 0 pairs out" in result.output, result.output
    table = datasets.load_from_disk(str(out)).data.table if out.suffix == "" else pq.read_table(out)
    assert table.num_rows == 0
    assert table.column_names == ["prompt", "prompt_id", "chosen", "chosen_rating", "rejected", "rejected_rating"]
    assert str(table.schema.field("chosen_rating").type) == "double"


@pytest.mark.parametrize("output,text", [("pairs.jsonl", ""), ("pairs.json", "[]\n")])
def test_no_pair_in_json_is_an_empty_file(tmp_path, output, text):
    for rows in (NO_PAIR_ROWS, []):
        result, out = dpo_run(tmp_path, rows, output, "--min-margin", "1", "--overwrite")
        assert result.exit_code == 0 and "0 pairs out" in result.output, result.output
        assert out.read_text() == text


@pytest.mark.parametrize("output", ["pairs", "pairs.parquet"])
def test_no_pair_after_a_resume_writes_what_one_run_writes(tmp_path, monkeypatch, output):
    from rewardmill.preferences import pipeline

    rows = [{**NO_PAIR_ROWS[0], "id": i} for i in range(3)]
    args = ["--min-margin", "1", "--chunk-rows", "1"]
    whole, reference = dpo_run(tmp_path, rows, "reference" + output.removeprefix("pairs"), *args)
    assert whole.exit_code == 0, whole.output
    calls = []

    def interrupted_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return format_dpo(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "format_dpo", interrupted_on_the_second_chunk)
        stopped, out = dpo_run(tmp_path, rows, output, *args)
    assert stopped.exit_code == 130 and "1 input rows are committed" in stopped.output, stopped.output
    resumed, out = dpo_run(tmp_path, rows, output, *args, "--resume")
    assert resumed.exit_code == 0 and "3 rows in, 0 pairs out" in resumed.output, resumed.output
    assert schema(out) == schema(reference)
    assert "id" in (schema(out).names if out.suffix == ".parquet" else schema(out))  # a column of the input
    if out.suffix == ".parquet":
        assert out.read_bytes() == reference.read_bytes()
