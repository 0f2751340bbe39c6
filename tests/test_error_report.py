"""Errors a person can act on (issue 28, point 8): the end-of-run report groups errors by reason with a count and
the first rows of each, so a content error does not hide among many over-long rows; an interrupted and resumed
run reports the same groups as an uninterrupted one."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rewardmill.cli import app
from rewardmill.rows import error_groups

runner = CliRunner()


def test_reasons_are_grouped_with_their_numbers_written_as_n():
    messages = ["row 0: 3100 tokens exceed the maximum length 2048 (raise --max-length)",
                "row 4: 2050 tokens exceed the maximum length 2048 (raise --max-length)",
                "row 7: missing field 'instruction'"]
    groups = error_groups.group(messages)
    assert groups == {
        "N tokens exceed the maximum length N (raise --max-length)":
            {"count": 2, "rows": [0, 4], "example": messages[0]},
        "missing field 'instruction'": {"count": 1, "rows": [7], "example": messages[2]},
    }
    later = error_groups.group([f"row {n}: missing field 'instruction'" for n in range(10, 20)])
    error_groups.merge(groups, later)
    assert groups["missing field 'instruction'"] == {"count": 11, "rows": [7, 10, 11, 12, 13], "example": messages[2]}
    assert error_groups.report_lines(groups) == [
        "11 x missing field 'instruction' (rows 7, 10, 11, 12, 13, ...)",
        "2 x 3100 tokens exceed the maximum length 2048 (raise --max-length) (rows 0, 4)",
    ]


def test_a_row_with_the_same_problem_in_several_items_counts_with_the_rows_that_have_it_once():
    messages = ["row 2: responses[0]: must be a string, got int; row 2: responses[3]: must be a string, got int",
                "row 9: responses[1]: must be a string, got int",
                "row 11: responses[1]: must be a string, got int; row 11: responses[2]: is empty"]
    assert {key: entry["rows"] for key, entry in error_groups.group(messages).items()} == {
        "responses[N]: must be a string, got int": [2, 9],
        "responses[N]: must be a string, got int; responses[N]: is empty": [11],
    }
    assert error_groups.report_lines(error_groups.group(messages)) == [
        "2 x responses[0]: must be a string, got int; row 2: responses[3]: must be a string, got int (rows 2, 9)",
        "1 x responses[1]: must be a string, got int; row 11: responses[2]: is empty (row 11)",
    ]


def rows() -> list[dict]:
    out = []
    for i in range(300):
        if i % 3 == 0:
            out.append({"instruction": "q", "response": 7})  # wrong type: many
        elif i == 250:
            out.append({"conversation": [{"role": "user", "content": "q"}]})  # one content error, late
        else:
            out.append({"instruction": "q", "response": "a" * (i % 5)})
    return out


def report(output: str) -> list[str]:
    """The error report: from its heading to the end of the output."""
    lines = output.splitlines()
    return lines[next(i for i, line in enumerate(lines) if "rows have errors" in line):]


def test_one_rare_error_is_not_hidden_by_a_frequent_one_and_resume_reports_the_same(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    want = [
        "101 rows have errors (see the 'error' column), by reason (rows numbered from 0):",
        "  100 x field 'response' must be a string, got int (rows 0, 3, 6, 9, 12, ...)",
        "  1 x field 'conversation' must end with an assistant turn, but its last turn is 'user' (row 250)",
    ]
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "40"])
    assert result.exit_code == 0, result.output
    assert report(result.output) == want

    # a run interrupted after its first chunks: the resumed run's report counts the committed chunks too
    from rewardmill import RowOptions, score_file
    from rewardmill.reward_models.baselines import LengthScorer

    interrupted = tmp_path / "resumed.jsonl"

    class StopsAfterTwoChunks(LengthScorer):
        calls = 0

        def score_items(self, items, on_progress=None):
            StopsAfterTwoChunks.calls += 1
            if StopsAfterTwoChunks.calls == 3:
                raise KeyboardInterrupt
            return super().score_items(items, on_progress)

    try:
        score_file(source, interrupted, StopsAfterTwoChunks(), RowOptions(chunk_rows=40))
    except KeyboardInterrupt:
        pass
    resumed = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(interrupted), "--chunk-rows", "40",
                                  "--resume"])
    assert resumed.exit_code == 0 and "80 of them committed" in resumed.output, resumed.output
    assert report(resumed.output) == want


def test_dpo_groups_its_errors_too(tmp_path):
    source = tmp_path / "in.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}], "generations": ["a", "b"], "ratings": [1, 2]}
    bad = {"messages": [{"role": "user", "content": "q"}], "generations": ["a", "b"], "ratings": [1]}
    source.write_text("".join(json.dumps(bad if i % 4 == 1 else good) + "\n" for i in range(20)))
    result = runner.invoke(app, ["dpo", str(source), "-o", str(tmp_path / "pairs.jsonl")])
    assert result.exit_code == 0, result.output
    lines = report(result.output)
    assert lines[0] == "5 rows have errors, by reason (rows numbered from 0):"
    assert len(lines) == 2 and lines[1].startswith("  5 x ") and lines[1].endswith("(rows 1, 5, 9, 13, 17)")
