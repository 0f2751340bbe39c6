"""Types per cell, never per run (issue 28, points 1 and 2): whatever a file holds, a run ends with every good row
scored, a reason for every bad one, and every pass-through value kept in every output format; a NaN or infinite
score is a null score with an error, and JSON output never holds a bare NaN.

Inputs are 12 rows scored in chunks of 4 (rows 0-3, 4-7, 8-11) by the length baseline, so a value in row 8 or
later arrives after two chunks are committed. Expected outputs are written out here."""

import csv
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rewardmill import LengthScorer, score_rows
from rewardmill.cli import app
from rewardmill.scorer import ItemResult

runner = CliRunner()
FORMATS = ("jsonl", "json", "csv", "parquet")
NAN_REASON = "the scorer gave no finite number (a float16 overflow or a broken head does this)"
WIDENED = "to keep every value, the output format made these columns change form:"


def make_rows(column: str | None = None, values: list | None = None) -> list[dict]:
    """12 rows; response i is 'r' * (i % 3 + 1), so its length score is 1.0, 2.0, 3.0, 1.0, ..."""
    rows = [{"id": i, "instruction": "q", "response": "r" * (i % 3 + 1)} for i in range(12)]
    if column is not None:
        for row, value in zip(rows, values):
            row[column] = value
    return rows


SCORES = [1.0, 2.0, 3.0] * 4


def no_constant(name: str):
    raise AssertionError(f"bare {name} in JSON output")


def score(tmp_path, rows: list[dict], fmt: str, *extra: str, name: str = "out"):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / f"{name}.{fmt}"
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "4", *extra])
    return result, out


def read(out) -> list[dict]:
    """The output's rows; JSON read so that a bare NaN or Infinity fails the test."""
    if out.suffix == ".jsonl":
        return [json.loads(line, parse_constant=no_constant) for line in out.read_text().splitlines()]
    if out.suffix == ".json":
        return json.loads(out.read_text(), parse_constant=no_constant)
    if out.suffix == ".csv":
        with open(out, newline="") as handle:
            return list(csv.DictReader(handle))
    return pq.read_table(out).to_pylist()


def column(out, name: str) -> list:
    return [row[name] for row in read(out)]


def ids(out) -> list[int]:
    return [int(value) for value in column(out, "id")]


def scores(out) -> list:
    return [None if value in (None, "") else float(value) for value in column(out, "score")]


def errors(out) -> list:
    return [value or None for value in column(out, "error")]


# ------------------------------------------------------------------ a field the scorer reads


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_number_where_a_response_is_read_is_that_rows_error_and_the_run_finishes(tmp_path, fmt):
    rows = make_rows()
    rows[9]["response"] = 7
    result, out = score(tmp_path, rows, fmt)
    assert result.exit_code == 0, result.output
    assert ids(out) == list(range(12))
    assert scores(out) == SCORES[:9] + [None] + SCORES[10:]
    assert errors(out) == [None] * 9 + ["row 9: field 'response' must be a string, got int"] + [None] * 2
    kept = {  # the response column, every value kept: 7 stays a number, apart from text
        "jsonl": ["r", "rr", "rrr"] * 3 + [7, "rr", "rrr"],
        "json": ["r", "rr", "rrr"] * 3 + [7, "rr", "rrr"],
        "csv": ['"r"', '"rr"', '"rrr"'] * 3 + ["7", '"rr"', '"rrr"'],
        "parquet": ['"r"', '"rr"', '"rrr"'] * 3 + ["7", '"rr"', '"rrr"'],
    }[fmt]
    assert column(out, "response") == kept
    why = {
        "csv": "  'response' written as JSON text (row 9 holds a number where row 0 holds text, and a CSV cell is "
               "text either way)",
        "parquet": "  'response' written as JSON text (row 9 holds a number where row 8 holds text)",
    }.get(fmt)
    assert (WIDENED in result.output) == (why is not None)
    if why:
        assert why in result.output.splitlines()
    assert not (tmp_path / f"out.{fmt}.partial").exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value,kind", [([1], "list"), ({"text": "a"}, "dict"), (None, "null")])
def test_a_list_an_object_or_a_null_where_text_is_read(tmp_path, fmt, value, kind):
    rows = make_rows()
    rows[10]["instruction"] = value
    result, out = score(tmp_path, rows, fmt)
    assert result.exit_code == 0, result.output
    reason = "missing field 'instruction'" if value is None else f"field 'instruction' must be a string, got {kind}"
    assert errors(out) == [None] * 10 + [f"row 10: {reason}", None]
    assert scores(out) == SCORES[:10] + [None, SCORES[11]]


# ------------------------------------------------------------------ pass-through columns


CHANGES = {
    # the type changes within the last chunk, or from the last chunk on
    "within a chunk": ([0, 1, 2, 3, 4, 5, 6, 7, 8, "nine", 10, 11],
                       "row 9 holds text where row 8 holds a number",
                       "row 9 holds text where row 0 holds a number"),
    "from a chunk on": ([0, 1, 2, 3, 4, 5, 6, 7, "8", "9", "10", "11"],
                        "row 8 holds string where earlier rows hold int64",
                        "row 8 holds text where row 0 holds a number"),
}
AS_JSON_TEXT = {
    "within a chunk": ["0", "1", "2", "3", "4", "5", "6", "7", "8", '"nine"', "10", "11"],
    "from a chunk on": ["0", "1", "2", "3", "4", "5", "6", "7", '"8"', '"9"', '"10"', '"11"'],
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_pass_through_column_whose_type_changes_keeps_every_value(tmp_path, fmt, change):
    values, parquet_why, csv_why = CHANGES[change]
    result, out = score(tmp_path, make_rows("meta", values), fmt)
    assert result.exit_code == 0, result.output
    assert ids(out) == list(range(12)) and scores(out) == SCORES and errors(out) == [None] * 12
    if fmt in ("jsonl", "json"):
        assert column(out, "meta") == values
        assert WIDENED not in result.output
    else:
        assert column(out, "meta") == AS_JSON_TEXT[change]
        why = parquet_why if fmt == "parquet" else csv_why + ", and a CSV cell is text either way"
        assert f"  'meta' written as JSON text ({why})" in result.output.splitlines()
    if fmt == "parquet":
        field = pq.read_schema(out).field("meta")
        assert field.type == pa.string() and field.metadata == {b"rewardmill.encoding": b"json"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_integer_beyond_64_bits(tmp_path, fmt):
    values = [1] * 10 + [2**70, -(2**64)]
    result, out = score(tmp_path, make_rows("big", values), fmt)
    assert result.exit_code == 0, result.output
    assert ids(out) == list(range(12)) and scores(out) == SCORES
    got = column(out, "big")
    if fmt in ("jsonl", "json"):
        assert got == [1] * 10 + [1180591620717411303424, -18446744073709551616]
        assert "1180591620717411303424" in out.read_text()
    elif fmt == "csv":  # digits in a cell, as every number of the column
        assert got == ["1"] * 10 + ["1180591620717411303424", "-18446744073709551616"]
        assert WIDENED not in result.output
    else:
        assert got == ["1"] * 10 + ["1180591620717411303424", "-18446744073709551616"]
        assert ("  'big' written as JSON text (row 10 holds an integer beyond 64 bits, which Parquet has no type "
                "for)") in result.output.splitlines()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_list_column_null_in_the_first_chunk_and_a_column_null_throughout(tmp_path, fmt):
    tags = [None] * 4 + [[]] * 4 + [["t8"], ["t9", "x"], None, ["t11"]]
    rows = make_rows("tags", tags)
    for row in rows:
        row["never"] = None
    result, out = score(tmp_path, rows, fmt)
    assert result.exit_code == 0, result.output
    assert ids(out) == list(range(12)) and scores(out) == SCORES and WIDENED not in result.output
    if fmt == "csv":
        assert column(out, "tags") == [""] * 4 + ["[]"] * 4 + ['["t8"]', '["t9", "x"]', "", '["t11"]']
        assert column(out, "never") == [""] * 12
    else:
        assert column(out, "tags") == tags and column(out, "never") == [None] * 12
    if fmt == "parquet":
        assert pq.read_schema(out).field("tags").type == pa.list_(pa.string())


def test_parquet_takes_a_wider_type_only_where_every_earlier_value_fits_it(tmp_path):
    rows = make_rows("rating", [1, 2, 3, 4, 5, 6, 7, 8, 8.5, 9, 9.5, 10])
    rows = [{**row, "exact": 2**53 + 1 if i == 2 else i if i < 8 else i + 0.5,
             "meta": {"a": i} if i < 8 else {"a": i, "b": "x"}} for i, row in enumerate(rows)]
    result, out = score(tmp_path, rows, "parquet")
    assert result.exit_code == 0, result.output
    schema = pq.read_schema(out)
    assert schema.field("rating").type == pa.float64()  # 1..8 are exact as doubles
    assert column(out, "rating") == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.5, 9.0, 9.5, 10.0]
    assert schema.field("meta").type == pa.struct([("a", pa.int64()), ("b", pa.string())])
    assert column(out, "meta")[7:9] == [{"a": 7, "b": None}, {"a": 8, "b": "x"}]
    # 2**53 + 1 has no double: the column is JSON text, every value exact
    assert column(out, "exact") == ["0", "1", "9007199254740993", "3", "4", "5", "6", "7", "8.5", "9.5", "10.5",
                                    "11.5"]
    assert "  'exact' written as JSON text (row 8 holds double where earlier rows hold int64)" in result.output
    assert "'rating'" not in result.output and "'meta'" not in result.output


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_late_row_of_every_kind_never_fails_the_assembly(tmp_path, fmt):
    rows = make_rows()
    for i, row in enumerate(rows[:11]):
        row.update(n=i, nested={"k": [i]}, tags=["a"], flag=True)
    rows[11].update(response={"not": "text"}, n="eleven", nested=[{"k": "x"}], tags={"a": 1}, flag=2**80)
    result, out = score(tmp_path, rows, fmt)
    assert result.exit_code == 0, result.output
    assert ids(out) == list(range(12))
    assert errors(out)[11] == "row 11: field 'response' must be a string, got dict"
    last = read(out)[11]
    for name in ("response", "n", "nested", "tags", "flag"):
        value = last[name]
        if fmt in ("csv", "parquet"):  # every one of these columns changed kind: JSON text, read back as the value
            value = json.loads(value)
        assert value == rows[11][name], name


# ------------------------------------------------------------------ resume


def interrupted_on_the_third_call():
    """The length baseline's scoring, with Ctrl-C on its 3rd call: chunks 0 and 1 (rows 0-7) are committed."""
    original, calls = LengthScorer.score_items, []

    def score_items(self, items, on_progress=None):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, items, on_progress)

    return score_items


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("row", [2, 9], ids=["widened before the interruption", "widened after it"])
def test_resume_writes_what_an_uninterrupted_run_writes(tmp_path, monkeypatch, fmt, row):
    values = list(range(12))
    values[row] = "text"
    rows = make_rows("meta", values)
    rows[10]["response"] = 5
    for i, each in enumerate(rows):  # null in every chunk committed before the interruption
        each["tags"] = None if i < 8 else [f"t{i}"]
    whole, reference = score(tmp_path, rows, fmt, name="reference")
    assert whole.exit_code == 0, whole.output
    with monkeypatch.context() as patch:
        patch.setattr("rewardmill.reward_models.baselines.LengthScorer.score_items", interrupted_on_the_third_call())
        stopped, out = score(tmp_path, rows, fmt)
    assert stopped.exit_code == 130 and "8 input rows are committed" in stopped.output, stopped.output
    resumed, out = score(tmp_path, rows, fmt, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == reference.read_bytes()
    assert ids(out) == list(range(12)) and errors(out)[10] == "row 10: field 'response' must be a string, got int"
    if fmt in ("csv", "parquet"):
        assert column(out, "meta")[row] == '"text"' and column(out, "meta")[0] == "0"
        assert "  'meta' written as JSON text" in resumed.output  # also when a chunk before the resume widened it
    else:
        assert column(out, "meta") == values
    if fmt == "parquet":
        assert pq.read_schema(out).field("tags").type == pa.list_(pa.string())
        assert column(out, "tags") == [None] * 8 + [["t8"], ["t9"], ["t10"], ["t11"]]


# ------------------------------------------------------------------ NaN and infinite scores


def nan_for_some(self, items, on_progress=None):
    special = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
    return [ItemResult([{"score": special.get(text, float(len(text)))} for text in item.responses],
                       [None] * len(item.responses)) for item in items]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_nan_or_infinite_score_is_a_null_score_with_an_error(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr("rewardmill.reward_models.baselines.LengthScorer.score_items", nan_for_some)
    rows = make_rows()
    rows[3]["response"], rows[9]["response"], rows[10]["response"] = "nan", "inf", "-inf"
    result, out = score(tmp_path, rows, fmt)
    assert result.exit_code == 3, result.output  # a failure of the scorer, not of the row
    assert scores(out) == SCORES[:3] + [None] + SCORES[4:9] + [None, None, SCORES[11]]
    assert errors(out) == [None] * 3 + [f"row 3: score is NaN: {NAN_REASON}"] + [None] * 5 + [
        f"row 9: score is infinite: {NAN_REASON}", f"row 10: score is infinite: {NAN_REASON}", None]
    assert "  1 x score is NaN: " + NAN_REASON in result.output.splitlines()
    assert "  2 x score is infinite: " + NAN_REASON in result.output.splitlines()
    if fmt == "parquet":
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in column(out, "score"))


def test_nan_in_extra_outputs_and_item_outputs_is_an_error_naming_the_output():
    class Objectives(LengthScorer):
        output_names = ("score", "objectives")
        item_output_names = ("p_first",)

        def score_items(self, items, on_progress=None):
            return [ItemResult([{"score": 1.0, "objectives": [0.5, float("nan") if i == 1 else 0.5]}],
                               [None], {"p_first": float("inf") if i == 2 else 0.25}) for i, _ in enumerate(items)]

    out = list(score_rows(Objectives(), make_rows()[:3]))
    assert [(r["score"], r["objectives"], r["p_first"]) for r in out] == [
        (1.0, [0.5, 0.5], 0.25), (None, None, 0.25), (None, None, None)]
    assert [r["error"] for r in out] == [None, f"row 1: objectives holds NaN: {NAN_REASON}",
                                         f"row 2: p_first is infinite: {NAN_REASON}"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_in_a_pass_through_column_is_kept_and_never_bare_in_json(tmp_path, fmt):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(row) for row in make_rows("x", [0.5] * 12)]
    lines[5] = lines[5].replace('"x": 0.5', '"x": NaN')
    lines[9] = lines[9].replace('"x": 0.5', '"x": [1.0, -Infinity]')
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / f"out.{fmt}"
    result = runner.invoke(app, ["score", str(source), "-m", "length", "-o", str(out), "--chunk-rows", "4"])
    assert result.exit_code == 0, result.output
    got = column(out, "x")  # `read` fails on a bare NaN or Infinity in JSON
    if fmt in ("jsonl", "json"):
        assert got == [0.5] * 5 + ["NaN"] + [0.5] * 3 + [[1.0, "-Infinity"]] + [0.5] * 2
        assert ("  'x' NaN and infinities written as the text \"NaN\", \"Infinity\", \"-Infinity\" (row 5 holds NaN, "
                "which JSON has no number for)") in result.output.splitlines()
    else:  # a list among numbers makes the column JSON text, in which NaN is Python's NaN
        assert got == ["0.5"] * 5 + ["NaN"] + ["0.5"] * 3 + ["[1.0, -Infinity]"] + ["0.5"] * 2
