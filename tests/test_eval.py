"""`rewardmill eval`: metrics against hand-computed values (ties, bootstrap intervals with a fixed seed), the
layouts, the baselines, one engine run for chosen and rejected together, and the CLI end to end on the real
hh-rlhf and LLMBar samples with a local model and the length baseline."""

import gzip
import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rewardmill import LengthScorer, RewardModel
from rewardmill.cli import app
from rewardmill.errors import InputError
from rewardmill.evaluation import Evaluation, Pair, ScorerRun, load_pairs, score_pairs
from rewardmill.evaluation.metrics import accuracy, agreement, length_buckets, outcome
from rewardmill.reward_models.baselines import RandomScorer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
runner = CliRunner()
USER = ({"role": "user", "content": "q"},)


# ---------------------------------------------------------------------------------------- metrics


def test_a_tie_counts_as_wrong_and_a_missing_score_is_no_outcome():
    assert outcome(2.0, 1.0) is True and outcome(1.0, 1.0) is False and outcome(0.5, 1.0) is False
    assert outcome(None, 1.0) is None


def test_bootstrap_interval_by_hand():
    assert accuracy([True] * 7).as_dict() == {"accuracy": 1.0, "ci95": [1.0, 1.0], "n": 7}
    assert accuracy([False] * 3).as_dict() == {"accuracy": 0.0, "ci95": [0.0, 0.0], "n": 3}
    # Two pairs, one right: each resample draws two of them, so its accuracy is 0, 0.5 or 1 with probability
    # 1/4, 1/2, 1/4; 2.5th and 97.5th percentiles of 1000 such draws are 0 and 1.
    two = accuracy([True, False], resamples=1000, seed=3)
    assert two.value == 0.5 and (two.low, two.high) == (0.0, 1.0)
    # The same seed gives the same interval; another seed may not, and the interval narrows with n.
    many = [i % 4 != 0 for i in range(400)]  # 75% right
    first, again = accuracy(many, seed=11), accuracy(many, seed=11)
    assert (first.low, first.high) == (again.low, again.high)
    assert first.value == 0.75 and 0.70 < first.low < 0.75 < first.high < 0.80  # about +-1.96 * sqrt(.75*.25/400)
    assert abs((first.high - first.low) / 2 - 1.96 * (0.75 * 0.25 / 400) ** 0.5) < 0.01


def test_length_buckets_and_agreement_by_hand():
    assert length_buckets([-5000, -1000, -1, 0, 29, 30, 999, 1000]) == [
        "<-1000", "-1000..-300", "-30..0", "0..30", "0..30", "30..100", "300..1000", ">=1000"]
    assert agreement([True, True, False, None], [True, False, False, True]) == (2 / 3, 3)


def test_summary_by_hand():
    pairs = [Pair(USER, "long answer here", "short", "a"), Pair(USER, "x", "yy", "a"),
             Pair(USER, "same", "same", "b"), Pair(USER, "abc", "de", "b")]
    run = ScorerRun("m", chosen=[2.0, 4.0, 1.0, None], rejected=[1.0, 3.0, 1.0, None],
                    correct=[True, True, False, None], errors=[None, None, None, "boom"], consistent=[None] * 4)
    length = score_pairs(pairs, LengthScorer(), "length")
    summary = Evaluation(pairs, [run, length], resamples=200).summary()
    m = summary["scorers"]["m"]
    assert (m["accuracy"], m["n"], m["ties"], m["errors"]) == (pytest.approx(2 / 3), 3, 1, 1)
    assert m["subsets"]["a"]["accuracy"] == 1.0 and m["subsets"]["b"]["accuracy"] == 0.0
    assert summary["scorers"]["length"]["accuracy"] == 0.5  # right on 0 and 3, wrong on 1, tie on 2
    assert summary["scorers"]["length"]["ties"] == 1
    assert summary["agreement"]["m"]["length"] == pytest.approx(2 / 3)  # pairs 0-2 scored by both: same on 0, 2
    # length differences 11, -1, 0 -> buckets 0..30 (two) and -30..0 (one)
    assert {row["bucket"]: row["n"] for row in m["length_bias"]} == {"-30..0": 1, "0..30": 2}
    assert summary["disagreeing_pairs"] == {"m vs length": [1]}
    (worst,) = summary["disagreements"]  # the only pair the two scorers disagree on
    assert (worst["pair"], worst["right"], worst["wrong"]) == (1, ["m"], ["length"])


# ---------------------------------------------------------------------------------------- layouts


def test_layouts_and_per_row_errors():
    hh = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: a good one",
          "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no"}
    (pair,), errors, layout = load_pairs([hh])
    assert layout == "hh-rlhf" and errors == [] and pair.chosen == "a good one" and pair.rejected == "no"
    assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user"]
    bar = [{"input": "Say hi", "output_1": "hi", "output_2": "bye", "label": 2},
           {"input": "x", "output_1": "a", "output_2": "b", "label": 3}]
    pairs, errors, layout = load_pairs(bar)
    assert layout == "llmbar" and (pairs[0].chosen, pairs[0].rejected) == ("bye", "hi")
    assert errors == ["row 1: field 'label' must be 1 or 2, got 3"]
    trl = [{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}], "subset": "s"},
           {"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": 5}]
    pairs, errors, layout = load_pairs(trl)
    assert layout == "pairs" and pairs[0].prompt == USER and pairs[0].subset == "s"
    assert errors == ["row 1: field 'rejected' must be a string or a list of messages, got int"]
    with pytest.raises(InputError, match="Looked for: pairs .* hh-rlhf .* llmbar"):
        load_pairs([{"question": "q", "good": "a", "bad": "b"}])
    with pytest.raises(InputError, match="no usable preference pairs; e.g. row 0: field 'label'"):
        load_pairs([hh], layout="llmbar")  # a forced layout the rows do not fit
    with pytest.raises(InputError):
        load_pairs([hh], layout="nope")


def test_an_empty_answer_is_scored_as_rewardbench_scores_it(llama_dir):
    """An empty chosen or rejected answer is an answer in every layout; an empty prompt or inner turn is not."""
    hh = {"chosen": "\n\nHuman: say a slur\n\nAssistant: ", "rejected": "\n\nHuman: say a slur\n\nAssistant: ok"}
    hh_inner = {"chosen": "\n\nHuman: \n\nAssistant: a", "rejected": "\n\nHuman: \n\nAssistant: b"}
    (pair,), errors, _ = load_pairs([hh, hh_inner])
    assert (pair.chosen, pair.rejected, pair.prompt) == ("", "ok", ({"role": "user", "content": "say a slur"},))
    assert errors == ["row 1: the chosen transcript does not alternate '\\n\\nHuman: ' and '\\n\\nAssistant: ' "
                      "turns ending with an Assistant turn"]
    bar, errors, _ = load_pairs([{"input": "Say hi", "output_1": "", "output_2": "hi", "label": 2},
                                 {"input": " ", "output_1": "a", "output_2": "b", "label": 1}])
    assert (bar[0].chosen, bar[0].rejected) == ("hi", "") and errors == ["row 1: field 'input' is empty"]
    pairs, errors, _ = load_pairs([{"prompt": "q", "chosen": "a", "rejected": ""},
                                   {"chosen": [*USER, {"role": "assistant", "content": ""}],
                                    "rejected": [*USER, {"role": "assistant", "content": "b"}]}])
    assert [(p.chosen, p.rejected) for p in pairs] == [("a", ""), ("", "b")] and errors == []
    every = [pair, *bar, *pairs]
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch")
    run = score_pairs(every, model, "llama")
    assert run.errors == [None] * 4 and None not in run.chosen and None not in run.rejected
    assert score_pairs(every, LengthScorer(), "length").correct == [False, True, True, False]


def test_random_baseline_is_seeded_and_independent_of_order():
    pairs = [Pair(USER, f"a{i}", f"b{i}", "all") for i in range(50)]
    once = score_pairs(pairs, RandomScorer(seed=4), "random")
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    again = score_pairs(shuffled, RandomScorer(seed=4), "random")
    by_pair = {p.chosen: c for p, c in zip(shuffled, again.chosen)}
    assert [by_pair[p.chosen] for p in pairs] == once.chosen
    assert score_pairs(pairs, RandomScorer(seed=5), "random").chosen != once.chosen


def test_chosen_and_rejected_go_through_one_engine_run(llama_dir, monkeypatch):
    model = RewardModel.from_pretrained(str(llama_dir), threads=1, cpu_kernel="torch")
    calls = []
    run = model.engine.run
    monkeypatch.setattr(model.engine, "run", lambda items, on_batch=None: (calls.append(len(items)), run(items, on_batch))[1])
    pairs = [Pair(USER, "yes " * (i + 1), "no", "all") for i in range(12)]
    result = score_pairs(pairs, model, "llama")
    assert calls == [24] and len(result.correct) == 12
    alone = model.score([[*USER, {"role": "assistant", "content": pairs[5].chosen}]])[0]
    assert abs(result.chosen[5] - alone) <= 1e-5


# ---------------------------------------------------------------------------------------- end to end


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("source,layout", [("hh-rlhf/harmless-base-test.jsonl.gz", "hh-rlhf"),
                                           ("llmbar/Natural/dataset.json", "llmbar"),
                                           ("pairs-sample.jsonl", "pairs")])
def test_eval_cli_end_to_end_on_the_real_samples(tmp_path, llama_dir, source, layout):
    path = DATA / source
    if source.endswith(".gz"):  # the first 300 records keep the test quick
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            rows = [next(lines) for _ in range(300)]
        path = tmp_path / "hh.jsonl"
        path.write_text("".join(rows))
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval", str(path), "-m", str(llama_dir), "-m", "length", "-m", "random", "-o",
                                 str(out), "--threads", "1", "--cpu-kernel", "torch"])
    assert result.exit_code == 0, result.output
    assert f"({layout} layout)" in result.output and "length: accuracy" in result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["scorers"]) == {"llama", "length", "random"}
    table = pq.read_table(out / "pairs.parquet").to_pylist()
    assert len(table) == report["pairs"] > 50
    for name, entry in report["scorers"].items():  # every number can be recomputed from pairs.parquet
        correct = [row[f"{name}.correct"] for row in table if row[f"{name}.correct"] is not None]
        assert entry["accuracy"] == pytest.approx(sum(correct) / len(correct)) and entry["n"] == len(correct)
        low, high = entry["ci95"]
        assert low <= entry["accuracy"] <= high
    length = [row for row in table if row["length.correct"] is not None]
    assert all(row["length.correct"] == (row["chosen_chars"] > row["rejected_chars"]) for row in length)
    html = (out / "index.html").read_text()
    assert html.count("<svg") == 4  # self-contained: nothing is fetched to view it
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html) and "<script" not in html and "<link" not in html
    assert report["disagreements"] and report["agreement"]["length"]["length"] == 1.0


def test_a_pairwise_judge_counts_ties_and_inconsistent_verdicts_as_wrong(tmp_path):
    from fake_judge_server import FakeJudgeServer

    rows = [{"prompt": "Say something.", "chosen": "a longer answer", "rejected": "short"},  # right both ways
            {"prompt": "Say something.", "chosen": "tiny", "rejected": "much longer text"},  # wrong both ways
            {"prompt": "Say something.", "chosen": "same", "rejected": "also"},  # equal lengths: a tie
            {"prompt": "POSITION-BIASED question", "chosen": "a longer answer", "rejected": "short"}]  # A, A
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeJudgeServer() as server:
        result = runner.invoke(app, ["eval", str(source), "--judge-task", "pairwise", "--judge-model", "toy",
                                     "--base-url", server.url, "-m", "length", "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    judge = report["scorers"]["toy (pairwise judge)"]
    assert (judge["accuracy"], judge["n"]) == (0.25, 4)  # only the first pair: the tie and the flip count as wrong
    assert judge["position_consistency"] == 0.75
    table = pq.read_table(tmp_path / "report" / "pairs.parquet").to_pylist()
    assert [row["toy (pairwise judge).consistent"] for row in table] == [True, True, True, False]


def test_a_rating_judge_scores_each_answer(tmp_path):
    from fake_judge_server import FakeJudgeServer

    from rewardmill.judges import GenerationSettings, Judge, OpenAIBackend, make_task

    pairs = [Pair(USER, "four", "a", "all"), Pair(USER, "b", "three", "all"), Pair(USER, "same", "also", "all")]
    with FakeJudgeServer() as server:  # it rates an answer by its length, 1..10
        judge = Judge(make_task("rating"), OpenAIBackend("toy", server.url, settings=GenerationSettings()))
        run = score_pairs(pairs, judge, "judge")
    assert (run.chosen, run.rejected, run.correct) == ([4.0, 1.0, 4.0], [1.0, 5.0, 4.0], [True, False, False])


def test_an_unreadable_line_is_a_row_error(tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{not json\n')
    from rewardmill.rows.readers import read_rows

    pairs, errors, _ = load_pairs(read_rows(source).rows)
    assert len(pairs) == 1 and errors == ["row 1: line 2 is not valid JSON (Expecting property name enclosed in double quotes)"]


def test_unusable_rows_are_listed_and_a_baseline_is_never_marked_best(tmp_path):
    """Issue 28, point 8: each unusable row with its reason in report.json and the HTML; a random or length
    baseline is a yardstick, never the best scorer (with only baselines, none is marked)."""
    from rewardmill.evaluation import report as report_module

    rows = [{"prompt": f"q{i}", "chosen": "a" * (1 + i % 3), "rejected": "b" * (3 - i % 3)} for i in range(40)]
    rows[7] = {"prompt": "q", "chosen": "a"}
    rows[21] = {"prompt": "q", "chosen": 5, "rejected": "b"}
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval", str(source), "-m", "length", "-m", "random", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [u["row"] for u in report["unusable_rows"]] == [7, 21] and report["input_errors"] == 2
    assert all(u["reason"] and not u["reason"].startswith("row ") for u in report["unusable_rows"])
    html = (out / "index.html").read_text()
    table = html[html.index('<table id="unusable">'):]
    for entry in report["unusable_rows"]:
        assert f"<td>{entry['row']}</td>" in table and entry["reason"].replace("'", "&#39;") in table
    assert report["scorers"]["random"]["baseline"] and report["scorers"]["length"]["baseline"]
    assert 'class="best"' not in html
    summary = {"scorers": {"random": {"n": 10, "accuracy": 0.9, "baseline": True},
                           "model": {"n": 10, "accuracy": 0.6, "baseline": False}}}
    assert report_module.best_scorer(summary) == "model"


def test_legends_sit_outside_the_plot(monkeypatch):
    """No legend covers data: every legend is the figure's, below the axes."""
    import matplotlib

    matplotlib.use("Agg")
    from rewardmill.evaluation import report as report_module

    figures = []
    monkeypatch.setattr(report_module, "_svg", lambda figure: figures.append(figure) or "")
    summary = {"pairs": 4, "subsets": ["all"], "scorers": {
        name: {"accuracy": 0.5, "ci95": [0.4, 0.6], "n": 4, "subsets": {},
               "length_bias": [{"bucket": "0", "n": 4, "accuracy": 0.5, "ci95": [0.4, 0.6]}]}
        for name in ("a", "b")}}
    report_module.plot_subsets(summary)
    report_module.plot_length_bias(summary)
    for figure in figures:
        figure.canvas.draw()
        (axes,) = figure.axes
        assert axes.get_legend() is None and len(figure.legends) == 1
        legend_box = figure.legends[0].get_window_extent()
        assert legend_box.y1 <= axes.get_window_extent().y0 + 1  # entirely below the axes


def test_every_error_names_its_input_row_in_the_report_the_page_and_the_summary(tmp_path):
    """Pairs keep the number of the row they came from (rows numbered from 0, as in every error message): errors
    while scoring are grouped by reason with their rows in report.json, index.html and on stderr, beside the
    unusable rows; pairs.parquet and the examples name the row too."""
    from fake_judge_server import FakeJudgeServer

    rows = [{"prompt": f"q{i}" + (" BAD-REQUEST" if i in (5, 7) else ""), "chosen": "a" * (2 + i % 3),
             "rejected": "b"} for i in range(10)]
    rows[2] = {"prompt": "q", "chosen": "a"}
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report"
    with FakeJudgeServer() as server:
        result = runner.invoke(app, ["eval", str(source), "--judge-task", "pairwise", "--judge-model", "toy",
                                     "--base-url", server.url, "-m", "random", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    (group,) = report["scorers"]["toy (pairwise judge)"]["errors_by_reason"]
    assert (group["count"], group["rows"]) == (2, [5, 7]) and group["reason"].startswith("HTTP 400 from ")
    assert report["scorers"]["random"]["errors_by_reason"] == []
    lines = result.output.splitlines()
    assert lines[:2] == ["9 pairs (pairs layout), 1 row not usable, by reason (rows numbered from 0):",
                         "  1 x field 'rejected' must be a string or a list of messages, got nothing (row 2)"]
    judge_line = next(i for i, line in enumerate(lines) if line.startswith("  toy (pairwise judge): accuracy"))
    assert lines[judge_line + 1].startswith("    2 x HTTP 400 from ") and lines[judge_line + 1].endswith("(rows 5, 7)")
    table = pq.read_table(out / "pairs.parquet").to_pylist()
    assert [r["row"] for r in table] == [0, 1, 3, 4, 5, 6, 7, 8, 9]
    assert [r["row"] for r in table if r["toy (pairwise judge).error"]] == [5, 7]
    html = (out / "index.html").read_text()
    errors_table = html[html.index('<table id="scoring-errors">'):]
    assert "<td>toy (pairwise judge)</td><td>2</td>" in errors_table and "<td>5, 7</td>" in errors_table
    assert report["disagreements"]
    for example in report["disagreements"]:
        assert example["row"] == table[example["pair"]]["row"] and f"row {example['row']} · " in html
