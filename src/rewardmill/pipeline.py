"""Score a whole dataset file with any scorer: read -> row layer -> write, with a progress bar and a summary.

`open_job` checks the input and the output (exists, readable, formats known, output not the input) before anything
slow happens, so the CLI calls it before it loads a model. The output is written atomically (`writers.Writer`):
a run that fails leaves an earlier output untouched.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .readers import RowSource, read_rows
from .row_scoring import RowOptions, score_row_chunks
from .scorer import Scorer
from .writers import Writer, output_format


@dataclass
class Summary:
    rows: int = 0
    rows_with_errors: int = 0
    seconds: float = 0.0
    output: str = ""
    errors: list[str] = field(default_factory=list)  # the first few, for the report
    failures: Counter = field(default_factory=Counter)  # errors from running the scorer, by reason

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class Job:
    source: RowSource
    output: Path


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def open_job(input_path: str | Path, output_path: str | Path, *, split: str | None = None) -> Job:
    """The input opened as a row stream and the output checked, or an InputError saying what is wrong."""
    output = Path(output_path)
    output_format(output)
    if Path(input_path).exists() and _same_file(Path(input_path), output):
        raise InputError(f"the output {output} is the input file; writing it would destroy the input, "
                         "so choose another output name")
    return Job(read_rows(input_path, split=split), output)


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    scorer: Scorer,
    options: RowOptions = RowOptions(),
    *,
    split: str | None = None,
    progress: bool | None = None,
) -> Summary:
    """Score every row of `input_path` into `output_path` (format from its extension), keeping input columns
    and row order. `progress=None` shows a bar only when stderr is a terminal."""
    return run_job(open_job(input_path, output_path, split=split), scorer, options, progress=progress)


def run_job(job: Job, scorer: Scorer, options: RowOptions = RowOptions(), *, progress: bool | None = None,
            keep_errors: int = 20) -> Summary:
    """Score an opened job's rows into its output."""
    summary = Summary(output=str(job.output))
    started = time.perf_counter()
    bar = _progress_bar(job.source.total, progress)
    error = options.columns.error
    try:
        with Writer(job.output) as writer:
            for chunk in score_row_chunks(scorer, job.source.rows, options, on_progress=bar.update,
                                          on_failure=lambda reason: summary.failures.update([failure_group(reason)])):
                for row in chunk:
                    if row.get(error):
                        summary.rows_with_errors += 1
                        if len(summary.errors) < keep_errors:
                            summary.errors.append(row[error])
                writer.write(chunk)
                summary.rows += len(chunk)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def failure_group(reason: str) -> str:
    """A failure's reason without what differs from row to row (its size), so alike failures count together."""
    return re.sub(r" \(\d+ tokens\)", "", reason)


def _progress_bar(total: int | None, enabled: bool | None):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, unit="row", desc="scoring", disable=disable, dynamic_ncols=True, smoothing=0.1,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} rows [{elapsed}<{remaining}, {rate_fmt}]"
                if total else "{desc}: {n:.0f} rows [{elapsed}, {rate_fmt}]")
