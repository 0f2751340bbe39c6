"""Score a whole dataset file with any scorer: read -> row layer -> write, with a progress bar and a summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .io import Writer, read_rows
from .row_scoring import RowOptions, score_row_chunks
from .scorer import Scorer


@dataclass
class Summary:
    rows: int = 0
    rows_with_errors: int = 0
    seconds: float = 0.0
    output: str = ""
    errors: list[str] = field(default_factory=list)  # the first few, for the report

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    scorer: Scorer,
    options: RowOptions = RowOptions(),
    *,
    split: str | None = None,
    progress: bool | None = None,
    keep_errors: int = 20,
) -> Summary:
    """Score every row of `input_path` into `output_path` (format from its extension), keeping input columns
    and row order. `progress=None` shows a bar only when stderr is a terminal."""
    source = read_rows(input_path, split=split)
    summary = Summary(output=str(output_path))
    started = time.perf_counter()
    bar = _progress_bar(source.total, progress)
    error = options.columns.error
    try:
        with Writer(output_path) as writer:
            for chunk in score_row_chunks(scorer, source.rows, options, on_progress=bar.update):
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


def _progress_bar(total: int | None, enabled: bool | None):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, unit="row", desc="scoring", disable=disable, dynamic_ncols=True, smoothing=0.1,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} rows [{elapsed}<{remaining}, {rate_fmt}]"
                if total else "{desc}: {n:.0f} rows [{elapsed}, {rate_fmt}]")
