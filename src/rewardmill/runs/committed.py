"""The one run loop of every command that turns an input file into an output: score, judge, dpo and calibrate.

`run_committed` reads an opened job's rows, skips what an interrupted run committed (numbering and detecting
shapes as an uninterrupted run would), hands the rest to the command's step, commits each chunk the step makes
(`checkpoint.CommittedOutput`), stops cleanly where the input is damaged, and ends with the command's `finish`
(by default the output assembled and moved into place), and Ray (`runs.ray`) makes the same checks before the
work and reports the same `Summary`. A Ctrl-C, a SIGTERM or a kill at any moment leaves the committed chunks for
`--resume`, since each commit is atomic. A command supplies only what differs: its step (rows in -> chunks of
output rows, each with a JSON-able tally folded into its summary), its output format and its finish.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InputDamaged
from ..rows.scoring import RowOptions, first_row_shape
from .checkpoint import CommittedOutput

if TYPE_CHECKING:
    from .job import Job

Progress = Callable[[float], None]


@dataclass
class Chunk:
    """What a step made of the next `rows_in` input rows: output `rows` (may be empty) and the chunk's tally."""

    rows: list[dict]
    rows_in: int
    tally: dict[str, Any] = field(default_factory=dict)


class Step(Protocol):
    def __call__(self, rows: Iterator[Any], options: RowOptions, on_progress: Progress | None) -> Iterable[Chunk]:
        """The rows left to do (numbered from `options.first_row`) as chunks of `options.chunk_rows` input rows."""


class ProgressBar(Protocol):
    def update(self, n: float = 1) -> Any: ...

    def close(self) -> Any: ...


@dataclass
class Run:
    """What the loop knows of a run that completed, beyond the tallies the command folded into its summary."""

    resumed_rows: int = 0  # input rows an interrupted run had committed, taken up by this one
    widened: dict[str, str] = field(default_factory=dict)  # columns written in another form to keep every value
    seconds: float = 0.0


def run_committed(job: Job, identity: dict[str, Any] | None, options: RowOptions, step: Step, *,
                  on_tally: Callable[[dict[str, Any]], None], fmt: str | None = None,
                  info: dict[str, Any] | None = None, finish: Callable[[Any], Any] | None = None,
                  progress: Callable[[int], ProgressBar] | None = None) -> Run:
    """Run `step` over the job's rows, committing each chunk under `identity` (compared on resume; `info` is
    recorded beside it, never compared). `identity=None`: nothing is committed (the command writes its output
    whole in `finish`, and a damaged input stops it with the reader's own error). `on_tally` receives every
    committed chunk's tally, an interrupted run's first; `progress(rows_done)` opens a progress bar."""
    if identity is not None and job.resume:
        identity = with_repaired_input(job, identity)
    started = time.perf_counter()
    damage: list[InputDamaged] = []
    with _open_output(job, identity, fmt, info) as out:
        run = Run(resumed_rows=out.rows_done)
        for tally in out.tallies:
            on_tally(tally)
        rows, options = skip_done(until_damaged(job.source.rows, damage), options, out.rows_done)
        bar = progress(out.rows_done) if progress is not None else None
        try:
            for chunk in step(rows, options, bar.update if bar is not None else None):
                out.commit(chunk.rows, chunk.rows_in, chunk.tally)
                on_tally(chunk.tally)
        finally:
            if bar is not None:
                bar.close()
        if damage:
            raise stopped_by_damage(damage[0], out) if identity is not None else damage[0]
        run.widened = out.widened
        if finish is not None:
            finish(out)
        else:
            out.finish()
    run.seconds = time.perf_counter() - started
    return run


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """The rows in lists of `size` (the last one shorter)."""
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _open_output(job: Job, identity: dict[str, Any] | None, fmt: str | None, info: dict[str, Any] | None):
    if identity is None:
        return _Uncommitted()
    return CommittedOutput(job.output, identity, resume=job.resume, overwrite=job.overwrite, fmt=fmt, info=info)


class _Uncommitted:
    """The output of a run that commits nothing: what it makes is in its tallies, written whole by `finish`."""

    rows_done = 0
    tallies: tuple[dict[str, Any], ...] = ()

    @property
    def widened(self) -> dict[str, str]:
        return {}

    def commit(self, rows: list[dict], rows_in: int, tally: dict[str, Any] | None = None) -> None:
        pass

    def finish(self) -> None:
        pass

    def __enter__(self) -> _Uncommitted:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


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

