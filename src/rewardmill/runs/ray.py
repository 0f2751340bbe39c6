"""Scale out on Ray Data: the same scorer and row layer on a pool of Ray actors, every row exactly once.

Rows are read with Ray Data's readers (order preserved) and zipped with `ray.data.range`, which gives each row a
stable `row_id`: its position in the input. A pool of actors (`ActorPoolStrategy`) each builds the scorer once
from plain options and scores its batches with the ordinary row layer, numbered by `row_id`, so per-row errors
read as in a single-process run. Each batch is written by its actor as one Parquet part named by its `row_id`
range, under a temporary name and renamed, in `OUTPUT.parts/`: a retried task rewrites the same part (never a
second copy), and a half-written part never counts; beside each part, written first, its tally (rows, errors
grouped by reason, failures), so the summary is the single-process run's `Summary`, resumed parts included.
`--resume` skips the `row_id`s that committed parts hold. With `merge`, the parts are read back, checked (every
`row_id` exactly once) and written as one file in input order. The checks before the work are `open_job`'s, as
for every command; Ray's global `DataContext` is left as it was (order is kept per dataset).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, OptionsError
from ..rows.readers import parse_line
from ..rows.scoring import RowOptions, first_row_shape, score_row_chunks
from ..scorer import Scorer
from .job import Summary, chunk_tally, failure_group, open_job

ROW_ID = "row_id"
LINE = "text"  # the column of ray.data.read_text


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start Ray locally
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float | None = None  # None: 1 with GPUs, else a share that leaves room for Ray Data's own tasks
    batch_rows: int = 256
    merge: bool = True

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_rows < 1:
            raise OptionsError("--actors and --batch-rows must be at least 1")


@dataclass
class RaySummary(Summary):
    parts: int = 0  # written by this run


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise OptionsError("--ray needs Ray Data: pip install 'rewardmill[ray]'") from None
    return ray


class _ScoreBatches:
    """The actor: builds the scorer once, scores each batch with the row layer and commits it as a part."""

    def __init__(self, make_scorer: Callable[[], Scorer], options: RowOptions, folder: str, done: frozenset):
        self.scorer = make_scorer()
        self.options, self.folder, self.done = options, Path(folder), done

    def __call__(self, batch):
        import pyarrow as pa

        rows = [_row(row) for row in batch.to_pylist() if row[ROW_ID] not in self.done]
        written, counts = [], []
        failures: Counter = Counter()
        for run in _contiguous(rows):
            first = run[0][ROW_ID]
            ids = [row.pop(ROW_ID) for row in run]
            options = dataclasses.replace(self.options, first_row=first, chunk_rows=len(run))
            failures.clear()
            (scored,) = list(score_row_chunks(self.scorer, run, options,
                                              on_failure=lambda reason: failures.update([failure_group(reason)])))
            tally = chunk_tally(scored, options.columns.error, failures)
            for row, row_id in zip(scored, ids):
                row[ROW_ID] = row_id
            written.append(self._commit(scored, tally, first, ids[-1]))
            counts.append(len(scored))
        return pa.table({"part": pa.array(written, pa.string()), "rows": pa.array(counts, pa.int64())})

    def _commit(self, rows: list[dict], tally: dict[str, Any], first: int, last: int) -> str:
        """One part, written as the single-process run writes a chunk: a column whose values have no one Arrow
        type is JSON text (marked in its field), so no value can fail the part; `merge_parts` reads it back. Its
        tally goes first: the part, renamed last, is what commits both."""
        from .writers import Parquet

        name = f"part-{first:012d}-{last:012d}.parquet"
        staging = self.folder / f".{name}.{os.getpid()}.tmp"
        staging.write_text(json.dumps(tally, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        os.replace(staging, self.folder / _tally_name(name))
        Parquet().write_part(rows, staging, first, [])
        os.replace(staging, self.folder / name)
        return name


def _tally_name(part: str) -> str:
    """Beside the part, named so that readers of the folder as a Parquet dataset pass it by (a leading "_")."""
    return "_" + part.replace("part-", "tally-").replace(".parquet", ".json")


def _tallies(folder: Path) -> list[dict[str, Any]]:
    """The tallies of the committed parts, in input order (a part committed without one counts its rows only)."""
    import pyarrow.parquet as pq

    found = []
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            found.append(json.loads((folder / _tally_name(part.name)).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            found.append({"rows": pq.read_metadata(part).num_rows, "rows_with_errors": 0, "errors": [],
                          "failures": {}})
    return found


def _row(record: dict) -> dict:
    """A JSONL line (read as text) parsed as the single-process reader parses it; a Parquet row as it is."""
    if set(record) == {LINE, ROW_ID}:
        row = parse_line(record[LINE], record[ROW_ID] + 1)  # line numbers as if the file had no blank lines
        row[ROW_ID] = record[ROW_ID]
        return row
    return record


def _contiguous(rows: list[dict]) -> list[list[dict]]:
    """Rows split into runs of consecutive row_ids (a batch is one run unless resume skipped some)."""
    runs: list[list[dict]] = []
    for row in sorted(rows, key=lambda r: r[ROW_ID]):
        if runs and runs[-1][-1][ROW_ID] + 1 == row[ROW_ID]:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def committed_ids(folder: Path) -> set[int]:
    """The row_ids of finished parts (temporary files are half-written and ignored)."""
    import pyarrow.parquet as pq

    ids: set[int] = set()
    for part in sorted(folder.glob("part-*.parquet")):
        ids.update(pq.read_table(part, columns=[ROW_ID]).column(ROW_ID).to_pylist())
    return ids


def score_with_ray(input_path: str | Path, output: str | Path, make_scorer: Callable[[], Scorer],
                   options: RowOptions = RowOptions(), ray_options: RayOptions = RayOptions(), *,
                   resume: bool = False, overwrite: bool = False, keep_errors: int = 20) -> RaySummary:
    """Score `input_path` (JSONL or Parquet) on Ray into parts under OUTPUT.parts/, then (with merge) one file.
    The input and the output are checked as `open_job` checks them before any work starts."""
    ray = _ray()
    output, source = Path(output), Path(input_path)
    if source.suffix.lower() not in (".jsonl", ".parquet"):
        raise InputError(f"{source}: --ray reads .jsonl and .parquet files (Ray Data's readers)")
    open_job(source, output, resume=resume, overwrite=overwrite)
    folder = parts_folder(output)
    if folder.exists() and any(folder.glob("part-*.parquet")) and not (resume or overwrite):
        raise InputError(f"{folder} holds parts of an earlier run; add --resume to continue it, or --overwrite")
    started = time.perf_counter()
    if overwrite and folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    done = frozenset(committed_ids(folder)) if resume else frozenset()
    if not ray.is_initialized():
        ray.init(address=ray_options.address, include_dashboard=False, log_to_driver=False,
                 **({} if ray_options.address else {"num_cpus": os.cpu_count()}))
    # JSONL is read as lines and parsed in the actors by rewardmill's own line parser: Ray's JSON reader turns a
    # missing nested value into NaN, where a single-process run sees no value
    dataset = ray.data.read_parquet(str(source)) if source.suffix.lower() == ".parquet" else \
        ray.data.read_text(str(source))
    _keep_order(dataset)
    total = dataset.count()
    dataset = dataset.zip(_keep_order(ray.data.range(total)).rename_columns({"id": ROW_ID}))
    if options.shape is None and options.first_shape is None and total:
        head = dataset.take_batch(min(total, options.chunk_rows), batch_format="pyarrow").to_pylist()
        head = [{k: v for k, v in _row(r).items() if k != ROW_ID} for r in head]  # as the actors will see them
        options = dataclasses.replace(options, first_shape=first_row_shape(head, options.columns))
    cpus = ray_options.cpus_per_actor
    if cpus is None:
        cpus = 1.0 if ray_options.gpus_per_actor else max(0.1, (os.cpu_count() or 1) / (2 * ray_options.actors))
    from ray.data import ActorPoolStrategy

    parts = dataset.map_batches(
        _ScoreBatches, fn_constructor_kwargs={"make_scorer": make_scorer, "options": options,
                                              "folder": str(folder), "done": done},
        batch_format="pyarrow", batch_size=ray_options.batch_rows,
        compute=ActorPoolStrategy(size=ray_options.actors), num_cpus=cpus, num_gpus=ray_options.gpus_per_actor)
    written = parts.take_all()
    summary = RaySummary(resumed_rows=len(done), parts=len(written), output=str(folder))
    for tally in _tallies(folder):
        summary.add(tally, keep_errors)
    summary.rows = total
    if ray_options.merge:
        summary.widened = merge_parts(folder, output, total)
        summary.output = str(output)
    summary.seconds = time.perf_counter() - started
    return summary


def _keep_order(dataset):
    """Rows in input order (row_ids are input positions), set on this dataset's own copy of Ray Data's context, so
    the program's global `DataContext` stays as it was."""
    dataset.context.execution_options.preserve_order = True
    return dataset


def _part_rows(part: Path) -> list[dict]:
    """A part's rows with their values as scored, JSON-text columns parsed back (the output's writer then
    decides, over every part, how each column is written)."""
    import json

    import pyarrow.parquet as pq

    from .writers import is_json_field

    table = pq.read_table(part)
    as_json = [field.name for field in table.schema if is_json_field(field)]
    rows = table.to_pylist()
    for row in rows:
        for name in as_json:
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return rows


def merge_parts(folder: Path, output: Path, total: int) -> dict[str, str]:
    """One file in input order from the parts; every row_id from 0 to total - 1 exactly once, or an error.
    Returns the columns the output's format wrote in another form to keep every value, and why."""
    from .checkpoint import CommittedOutput

    rows = sorted((row for part in sorted(folder.glob("part-*.parquet")) for row in _part_rows(part)),
                  key=lambda row: row[ROW_ID])
    ids = [row.pop(ROW_ID) for row in rows]
    if ids != list(range(total)):
        seen = set(ids)
        missing = [i for i in range(total) if i not in seen][:5]
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:5] if len(ids) != len(seen) else []
        raise InputError(f"the parts in {folder} do not hold every row exactly once (missing e.g. {missing}, "
                         f"repeated e.g. {repeated}); run again with --resume")
    with CommittedOutput(output, {"merged from": str(folder), "rows": total}, overwrite=True) as out:
        for start in range(0, len(rows), 2048):
            out.commit(rows[start : start + 2048], min(2048, len(rows) - start))
        widened = out.widened
        out.finish()
    return widened
