"""The Parquet writer on columns whose lists hold only nulls (a judge whose every answer failed to parse gives
`ratings` = [null, null] in each row): committed chunk by chunk as a run commits them, assembled, read back."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewardmill.runs.checkpoint import CommittedOutput

NULLS = [[None, None], [None, None], [None]]  # one chunk of a `ratings` column whose every rating failed


def rows(column: list, first: int = 0) -> list[dict]:
    return [{"id": first + i, "ratings": value} for i, value in enumerate(column)]


def write(out, chunks: list[list], resume: bool = False, finish: bool = True) -> None:
    """Commit each chunk of `ratings` values as a run does; with `finish=False` stop as an interrupted run does."""
    with CommittedOutput(out, {"run": 1}, resume=resume, fmt="parquet") as committed:
        first = committed.rows_out
        for column in chunks:
            committed.commit(rows(column, first), len(column))
            first += len(column)
        if finish:
            committed.finish()


def test_a_file_whose_every_chunk_is_a_list_of_nulls(tmp_path):
    out = tmp_path / "out.parquet"
    write(out, [NULLS, NULLS, [None, [], [None, None, None]]])
    table = pq.read_table(out)
    assert table.column("ratings").to_pylist() == NULLS + NULLS + [None, [], [None, None, None]]
    assert table.column("id").to_pylist() == list(range(9))
    assert table.schema.field("ratings").type == pa.list_(pa.null())


@pytest.mark.parametrize("later", [[[1.0, None], [None, 2.5]], [[1, None]]], ids=["doubles", "integers"])
def test_a_list_of_nulls_then_numbers(tmp_path, later):
    out = tmp_path / "out.parquet"
    write(out, [NULLS, later, NULLS])
    table = pq.read_table(out)
    assert table.column("ratings").to_pylist() == NULLS + later + NULLS
    assert table.schema.field("ratings").type == pa.list_(pa.float64() if isinstance(later[0][0], float)
                                                          else pa.int64())


@pytest.mark.parametrize("after", [[[1.0, None]], NULLS], ids=["numbers", "nulls"])
def test_a_resume_on_lists_of_nulls_writes_what_one_run_writes(tmp_path, after):
    reference = tmp_path / "reference.parquet"
    write(reference, [NULLS, NULLS, after])
    out = tmp_path / "out.parquet"
    write(out, [NULLS, NULLS], finish=False)
    assert (tmp_path / "out.parquet.partial").is_dir() and not out.exists()
    write(out, [after], resume=True)
    assert out.read_bytes() == reference.read_bytes()
    assert pq.read_table(out).column("ratings").to_pylist() == NULLS + NULLS + after


@pytest.mark.parametrize("order", ["nulls first", "nulls last"])
def test_a_list_of_nulls_inside_a_struct_that_gains_a_field(tmp_path, order):
    nulls = [{"x": [None, None]}, {"x": [None]}]
    wider = [{"x": [None], "y": 1}]
    chunks = [nulls, wider] if order == "nulls first" else [wider, nulls]
    out = tmp_path / "out.parquet"
    with CommittedOutput(out, {"run": 1}, fmt="parquet") as committed:
        for chunk in chunks:
            committed.commit([{"meta": value} for value in chunk], len(chunk))
        committed.finish()
    got = pq.read_table(out).column("meta").to_pylist()
    assert got == [{"y": None, **value} for chunk in chunks for value in chunk]
