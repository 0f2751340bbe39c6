"""Score a whole dataset file with any scorer: read -> row layer -> committed chunks -> output, with a progress
bar and a summary.

`open_job` checks the input and the output (exists, readable, formats known, output not the input and in a
folder that can be written, no partial run in the way) before anything slow happens, so the CLI calls it before
it loads a model. `run_job` scores on the committed-run loop (`committed.run_committed`): each chunk of output
rows is committed as it is scored (`checkpoint.CommittedOutput`); the output file appears, or is replaced, only
when the run completes. A run that stops early leaves an earlier output untouched and its committed chunks in
`OUTPUT.partial/`, which the same run with `resume=True` continues: the result is the file an uninterrupted run
would have written, byte for byte.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..rows import error_groups
from ..rows.readers import DEFAULT_ENCODING, RowSource
from ..rows.scoring import RowOptions, score_row_chunks
from ..scorer import Scorer
from .checkpoint import (
    committed_rows,
    input_fingerprint,
    partial_folder,
    scorer_choices,
    scorer_identity,
    scorer_spec,
)
from .committed import Chunk, Progress, run_committed
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


def run_info(scorer: Scorer | None) -> dict[str, Any] | None:
    """What a run's manifest records about it as information, never compared on resume: the model's spec."""
    spec = scorer_spec(scorer)
    return {"spec": spec} if spec is not None else None


def row_settings(options: RowOptions) -> dict[str, Any]:
    return {"columns": dataclasses.asdict(options.columns), "shape": options.shape.value if options.shape else None,
            "strict": options.strict, "chunk_rows": options.chunk_rows}


def run_job(job: Job, scorer: Scorer, options: RowOptions = RowOptions(), *, progress: bool | None = None,
            keep_errors: int = 20, command: str = "score") -> Summary:
    """Score an opened job's rows into its output, committing each chunk; continue an interrupted run when the
    job says `resume`."""
    summary = Summary(output=str(job.output))

    def step(rows: Iterator[Any], options: RowOptions, on_progress: Progress | None) -> Iterator[Chunk]:
        failures: Counter = Counter()
        for chunk in score_row_chunks(scorer, rows, options, on_progress=on_progress,
                                      on_failure=lambda reason: failures.update([failure_group(reason)])):
            yield Chunk(chunk, len(chunk), chunk_tally(chunk, options.columns.error, failures, keep_errors))
            failures.clear()

    run = run_committed(job, run_identity(command, job, scorer, row_settings(options)), options, step,
                        on_tally=lambda tally: summary.add(tally, keep_errors), info=run_info(scorer),
                        progress=lambda done: _progress_bar(job.source.total, progress, initial=done))
    summary.resumed_rows, summary.widened, summary.seconds = run.resumed_rows, run.widened, run.seconds
    return summary


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
