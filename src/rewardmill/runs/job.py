"""Score a whole dataset file with any scorer: read -> row layer -> committed chunks -> output, with a progress
bar and a summary.

`open_job` checks the input and the output (exists, readable, formats known, output not the input and in a
folder that can be written, no partial run in the way) before anything slow happens, so the CLI calls it before
it loads a model. Each chunk of output rows is committed as it is scored (`checkpoint.CommittedOutput`); the
output file appears, or is replaced, only when the run completes. A run that stops early leaves an earlier
output untouched and its committed chunks in `OUTPUT.partial/`, which the same run with `resume=True` continues:
the result is the file an uninterrupted run would have written, byte for byte.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputDamaged, InputError
from ..rows import error_groups
from ..rows.readers import DEFAULT_ENCODING, RowSource
from ..rows.scoring import RowOptions, first_row_shape, score_row_chunks
from ..scorer import Scorer
from .checkpoint import (
    CommittedOutput,
    committed_rows,
    input_fingerprint,
    partial_folder,
    scorer_choices,
    scorer_identity,
)
from .preflight import check_output_file, open_input
from .writers import output_format


@dataclass
class Summary:
    rows: int = 0  # every row of the output, those of an interrupted run's committed chunks included
    rows_with_errors: int = 0
    seconds: float = 0.0  # this run's
    output: str = ""
    errors: list[str] = field(default_factory=list)  # the first few, for the report
    failures: Counter = field(default_factory=Counter)  # errors from running the scorer, by reason
    resumed_rows: int = 0  # rows an interrupted run had committed, taken up by this one
    widened: dict[str, str] = field(default_factory=dict)  # columns written in another form to keep every value
    error_groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # by reason (see error_groups.py)

    @property
    def rows_per_second(self) -> float:
        return (self.rows - self.resumed_rows) / self.seconds if self.seconds else 0.0

    def add(self, tally: dict[str, Any], keep_errors: int = 20) -> None:
        """Count one committed chunk (its tally as `chunk_tally` made it)."""
        self.rows += tally["rows"]
        self.rows_with_errors += tally["rows_with_errors"]
        self.errors.extend(tally["errors"][: max(0, keep_errors - len(self.errors))])
        self.failures.update(tally["failures"])
        error_groups.merge(self.error_groups, tally.get("error_groups", {}))


def chunk_tally(chunk: list[dict], error_column: str, failures: Counter, keep_errors: int = 20) -> dict[str, Any]:
    errors = [row[error_column] for row in chunk if row.get(error_column)]
    return {"rows": len(chunk), "rows_with_errors": len(errors), "errors": errors[:keep_errors],
            "failures": dict(failures), "error_groups": error_groups.group(errors)}


@dataclass
class Job:
    source: RowSource
    output: Path
    input: str = ""
    split: str | None = None
    resume: bool = False
    overwrite: bool = False
    encoding: str = DEFAULT_ENCODING


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(input_path: str | Path, output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an output that is the input, that cannot be written (its folder is a file, or not writable), or
    that an interrupted run left partly done when neither `resume` nor `overwrite` says what to do with it."""
    if resume and overwrite:
        raise InputError("--resume continues an interrupted run and --overwrite throws it away: choose one")
    check_output_file(output)
    if Path(input_path).exists() and _same_file(Path(input_path), output):
        raise InputError(f"the output {output} is the input file; writing it would destroy the input, "
                         "so choose another output name")
    done = committed_rows(output)
    if done and not (resume or overwrite):
        raise InputError(f"{output}: an interrupted run left {done} input rows done in {partial_folder(output)}; "
                         "add --resume to continue it, or --overwrite to start over")


def open_job(input_path: str | Path, output_path: str | Path, *, split: str | None = None, resume: bool = False,
             overwrite: bool = False, encoding: str = DEFAULT_ENCODING) -> Job:
    """The input opened as a row stream and the output checked, or an InputError saying what is wrong."""
    output = Path(output_path)
    output_format(output)
    check_output(input_path, output, resume=resume, overwrite=overwrite)
    return Job(open_input(input_path, split, encoding), output, str(input_path), split, resume, overwrite, encoding)


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    scorer: Scorer,
    options: RowOptions = RowOptions(),
    *,
    split: str | None = None,
    progress: bool | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Summary:
    """Score every row of `input_path` into `output_path` (format from its extension), keeping input columns
    and row order. `progress=None` shows a bar only when stderr is a terminal. `resume` continues a run that
    was interrupted; `overwrite` discards what such a run left."""
    job = open_job(input_path, output_path, split=split, resume=resume, overwrite=overwrite)
    return run_job(job, scorer, options, progress=progress)


def run_identity(command: str, job: Job, scorer: Scorer | None, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything a run's output depends on, compared when it is resumed: with the scorer's own choices, which
    a resumed run makes the same way (`choices.reuse`); the CLI applies them before it loads the model."""
    read_as = {} if job.encoding == DEFAULT_ENCODING else {"encoding": job.encoding}
    return {"command": command, "input": {**input_fingerprint(job.input, job.split), **read_as},
            "scorer": scorer_identity(scorer) if scorer is not None else None, "settings": settings,
            "choices": scorer_choices(scorer)}


def row_settings(options: RowOptions) -> dict[str, Any]:
    return {"columns": dataclasses.asdict(options.columns), "shape": options.shape.value if options.shape else None,
            "strict": options.strict, "chunk_rows": options.chunk_rows}


def run_job(job: Job, scorer: Scorer, options: RowOptions = RowOptions(), *, progress: bool | None = None,
            keep_errors: int = 20, command: str = "score") -> Summary:
    """Score an opened job's rows into its output, committing each chunk; continue an interrupted run when the
    job says `resume`."""
    identity = run_identity(command, job, scorer, row_settings(options))
    if job.resume:
        identity = with_repaired_input(job, identity)
    started = time.perf_counter()
    damage: list[InputDamaged] = []
    with CommittedOutput(job.output, identity, resume=job.resume, overwrite=job.overwrite) as out:
        summary = Summary(output=str(job.output), resumed_rows=out.rows_done)
        for tally in out.tallies:
            summary.add(tally, keep_errors)
        rows, options = skip_done(until_damaged(job.source.rows, damage), options, out.rows_done)
        failures: Counter = Counter()
        bar = _progress_bar(job.source.total, progress, initial=out.rows_done)
        try:
            for chunk in score_row_chunks(scorer, rows, options, on_progress=bar.update,
                                          on_failure=lambda reason: failures.update([failure_group(reason)])):
                tally = chunk_tally(chunk, options.columns.error, failures, keep_errors)
                out.commit(chunk, len(chunk), tally)
                summary.add(tally, keep_errors)
                failures.clear()
        finally:
            bar.close()
        if damage:
            raise stopped_by_damage(damage[0], out)
        summary.widened = out.widened
        out.finish()
    summary.seconds = time.perf_counter() - started
    return summary


def until_damaged(rows: Iterable[Any], damage: list[InputDamaged]) -> Iterator[Any]:
    """The rows, ending quietly where the input is damaged (noted in `damage`), so that the rows before the
    damage are scored and committed like any others."""
    try:
        yield from rows
    except InputDamaged as error:
        damage.append(error)


def stopped_by_damage(error: InputDamaged, out: CommittedOutput) -> InputDamaged:
    """The one-line error for a damaged input: the rows before the damage stay committed when they can be
    trusted (the file breaks off), and are thrown away when they cannot (it is corrupt)."""
    if not error.sound_before:
        out.discard()
        return InputDamaged(f"{error}; the rows read before it may already be wrong, so none is kept. Repair or "
                            "download the file again and run the same command", error.lines, error.sha256, False)
    out.note_damaged_input(error.lines, error.sha256)
    kept = f"the {out.rows_done:,} rows before it are committed in {out.folder}" if out.rows_done else \
        "no row before it was committed"
    return InputDamaged(f"{error}; {kept}. Repair or download the file again and run the same command with "
                        "--resume to continue", error.lines, error.sha256)


def with_repaired_input(job: Job, identity: dict[str, Any]) -> dict[str, Any]:
    """A run stopped by a damaged input resumes on the repaired file when its first lines are the ones read
    before the damage: the identity then names the input the run started with."""
    from ..rows.readers import line_prefix_digest
    from .checkpoint import read_manifest

    manifest = read_manifest(job.output)
    damaged = (manifest or {}).get("damaged_input")
    started_with = (manifest or {}).get("identity", {}).get("input")
    if not damaged or started_with == identity["input"]:
        return identity
    if line_prefix_digest(job.input, damaged["lines"]) != damaged["sha256"]:
        return identity  # another file: the ordinary comparison refuses it, naming the input
    return {**identity, "input": started_with}


def skip_done(rows: Iterable[Any], options: RowOptions, done: int) -> tuple[Iterator[Any], RowOptions]:
    """The rows after the first `done`, and row options that number and read them as an uninterrupted run
    would: rows numbered from `done`, shapes detected against the first chunk's."""
    iterator = iter(rows)
    if not done:
        return iterator, options
    head = list(itertools.islice(iterator, min(done, options.chunk_rows)))
    collections.deque(itertools.islice(iterator, done - len(head)), maxlen=0)
    shape = options.shape or options.first_shape or (first_row_shape(head, options.columns) if head else None)
    return iterator, dataclasses.replace(options, first_row=options.first_row + done, first_shape=shape)


def failure_group(reason: str) -> str:
    """A failure's reason without what differs from row to row (its size), so alike failures count together."""
    return re.sub(r" \(\d+ tokens\)", "", reason)


PROGRESS_EVERY_SECONDS = 30.0


class ProgressLines:
    """Progress where stderr is not a terminal (a log file, a batch job): a plain line every
    `PROGRESS_EVERY_SECONDS`, so a long run is seen to move without a bar's carriage returns."""

    def __init__(self, total: int | None, initial: int = 0, every: float | None = None):
        self.total, self.done, self.initial = total, float(initial), initial
        self.every = PROGRESS_EVERY_SECONDS if every is None else every
        self.started = self.last = time.monotonic()

    def update(self, n: float = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = (self.done - self.initial) / max(now - self.started, 1e-9)
            of = f"/{self.total:,} rows ({100 * self.done / self.total:.0f}%)" if self.total else " rows"
            print(f"progress: {self.done:,.0f}{of}, {rate:,.1f} rows/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _progress_bar(total: int | None, enabled: bool | None, initial: int = 0):
    """A tqdm bar on a terminal (or with --progress), `ProgressLines` elsewhere, nothing with --no-progress."""
    from tqdm.auto import tqdm

    if enabled is None and not sys.stderr.isatty():
        return ProgressLines(total, initial)
    return tqdm(total=total, initial=initial, unit="row", desc="scoring", disable=enabled is False,
                dynamic_ncols=True, smoothing=0.1,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} rows [{elapsed}<{remaining}, {rate_fmt}]"
                if total else "{desc}: {n:.0f} rows [{elapsed}, {rate_fmt}]")
