"""`rewardmill dpo`: rated generations -> preference pairs, optionally rating them first with any scorer.

Output: JSONL, JSON, Parquet or CSV by extension (written atomically), or, for a name without one of those
extensions, a saved `datasets` directory that `datasets.load_from_disk` opens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .preferences import RATING_ERROR, SCRATCH_MESSAGES, DPOOptions, DPOSummary, format_dpo, with_prompt_messages, without_scratch
from .readers import read_rows
from .row_scoring import RowOptions, score_rows
from .rows import Columns, Shape
from .scorer import Scorer
from .writers import OUTPUT_FORMATS, Writer


@dataclass
class DPOJob:
    rows: Iterator[dict]
    output: Path
    as_dataset: bool


def open_dpo_job(input_path: str | Path, output_path: str | Path, *, split: str | None = None) -> DPOJob:
    output = Path(output_path)
    as_dataset = output.suffix.lower() not in OUTPUT_FORMATS
    if as_dataset and output.is_file():
        raise InputError(f"{output} is a file; a datasets directory needs a new folder name (or use .jsonl/.parquet)")
    if Path(input_path).exists() and output.exists() and Path(input_path).resolve() == output.resolve():
        raise InputError(f"the output {output} is the input; choose another output name")
    return DPOJob(read_rows(input_path, split=split).rows, output, as_dataset)


def run_dpo(job: DPOJob, options: DPOOptions = DPOOptions(), scorer: Scorer | None = None,
            chunk_rows: int = 2048) -> DPOSummary:
    """Rate (when a scorer is given) and format every row; write the pairs; return the summary."""
    summary = DPOSummary()
    rows = job.rows
    if scorer is not None:
        columns = options.columns
        scoring = RowOptions(columns=Columns(messages=SCRATCH_MESSAGES, generations=columns.generations,
                                             ratings=columns.ratings, error=RATING_ERROR),
                             shape=Shape.messages_generations, chunk_rows=chunk_rows)
        rows = without_scratch(score_rows(scorer, with_prompt_messages(rows, columns), scoring))
    pairs = format_dpo(rows, options, summary)
    if not job.as_dataset:
        with Writer(job.output) as writer:
            _write_chunks(writer, pairs, chunk_rows)
        return summary
    parent = job.output.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{job.output.name}.", suffix=".partial", dir=parent))
    try:
        staged = folder / "pairs.parquet"
        with Writer(staged) as writer:
            _write_chunks(writer, pairs, chunk_rows)
        import datasets

        datasets.Dataset.from_parquet(str(staged)).save_to_disk(str(folder / "dataset"))
        if job.output.exists():
            shutil.rmtree(job.output)
        os.replace(folder / "dataset", job.output)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return summary


def _write_chunks(writer: Writer, pairs: Iterator[dict], size: int) -> None:
    chunk: list[dict] = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) >= size:
            writer.write(chunk)
            chunk = []
    writer.write(chunk)
