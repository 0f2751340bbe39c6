"""Score a whole dataset file: read -> score rows in chunks -> write, with a progress bar and a summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .io import Writer, read_rows
from .model import RewardModel
from .rows import Columns, Shape


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
    model: RewardModel,
    *,
    columns: Columns = Columns(),
    shape: Shape | None = None,
    strict: bool = False,
    split: str | None = None,
    chunk_rows: int = 2048,
    progress: bool | None = None,
    keep_errors: int = 20,
) -> Summary:
    """Score every row of `input_path` into `output_path` (format from its extension), keeping input columns
    and row order. `progress=None` shows a bar only when stderr is a terminal."""
    source = read_rows(input_path, split=split)
    summary = Summary(output=str(output_path))
    started = time.perf_counter()
    bar = _progress_bar(source.total, progress)
    try:
        scored = model.score_rows(
            source.rows, columns=columns, shape=shape, strict=strict, chunk_rows=chunk_rows, on_progress=bar.update
        )
        with Writer(output_path) as writer:
            for chunk in _chunks(scored, chunk_rows):
                for row in chunk:
                    if row.get(columns.error):
                        summary.rows_with_errors += 1
                        if len(summary.errors) < keep_errors:
                            summary.errors.append(row[columns.error])
                writer.write(chunk)
                summary.rows += len(chunk)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _chunks(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress_bar(total: int | None, enabled: bool | None):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, unit="row", desc="scoring", disable=disable, dynamic_ncols=True, smoothing=0.1,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} rows [{elapsed}<{remaining}, {rate_fmt}]"
                if total else "{desc}: {n:.0f} rows [{elapsed}, {rate_fmt}]")
