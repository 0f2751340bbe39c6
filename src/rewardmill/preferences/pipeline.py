"""`rewardmill dpo`: rated generations -> preference pairs, optionally rating them first with any scorer.

Input is taken chunk by chunk on the committed-run loop (`runs.committed`): rated (when a scorer is given),
formatted, and the chunk's pairs committed with the count of input rows they came from, so an interrupted run
resumes where it stopped. Output: JSONL, JSON, Parquet or CSV by extension, or, for a name without one of those
extensions, a saved `datasets` directory that `datasets.load_from_disk` opens (assembled from the committed
Parquet parts). A Parquet, CSV or datasets output without a pair (every row a tie, say) has the columns (Parquet's
with their types) of the pairs that the first chunk holding a well-formed row would have given
(`formatting.example_pair`; the pair columns alone where no row is well-formed), the columns a run with pairs has.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..rows.readers import DEFAULT_ENCODING
from ..rows.scoring import RowOptions, score_rows
from ..rows.shapes import Columns, Shape
from ..runs.checkpoint import CommittedOutput
from ..runs.committed import Chunk, Progress, chunked, run_committed
from ..runs.job import Job, check_output, run_identity, run_info
from ..runs.preflight import open_input
from ..runs.writers import OUTPUT_FORMATS, Csv, Parquet, parquet_schema
from ..scorer import Scorer
from .formatting import (
    RATING_ERROR,
    SCRATCH_MESSAGES,
    DPOOptions,
    DPOSummary,
    example_pair,
    format_dpo,
    with_prompt_messages,
    without_scratch,
)

EMPTY_SCHEMA = "empty_schema"  # a tally's key: the Arrow schema of the pairs its rows would give, when none did


@dataclass
class DPOJob(Job):
    as_dataset: bool = False


def open_dpo_job(input_path: str | Path, output_path: str | Path, *, split: str | None = None,
                 resume: bool = False, overwrite: bool = False, encoding: str = DEFAULT_ENCODING) -> DPOJob:
    output = Path(output_path)
    as_dataset = output.suffix.lower() not in OUTPUT_FORMATS
    if as_dataset and output.is_file():
        raise InputError(f"{output} is a file; a datasets directory needs a new folder name (or use .jsonl/.parquet)")
    check_output(input_path, output, resume=resume, overwrite=overwrite)
    return DPOJob(open_input(input_path, split, encoding), output, str(input_path), split, resume, overwrite,
                  encoding, as_dataset=as_dataset)


def run_dpo(job: DPOJob, options: DPOOptions = DPOOptions(), scorer: Scorer | None = None,
            chunk_rows: int = 2048) -> DPOSummary:
    """Rate (when a scorer is given) and format every row, committing each chunk's pairs; write the output;
    return the summary (of the whole input, an interrupted run's committed chunks included)."""
    settings = {"dpo": dataclasses.asdict(options), "chunk_rows": chunk_rows,
                "output": "datasets" if job.as_dataset else job.output.suffix}
    scoring = RowOptions(columns=Columns(messages=SCRATCH_MESSAGES, generations=options.columns.generations,
                                         ratings=options.columns.ratings, error=RATING_ERROR),
                         shape=Shape.messages_generations, chunk_rows=chunk_rows)

    def step(rows: Iterator[Any], scoring: RowOptions, on_progress: Progress | None) -> Iterator[Chunk]:
        first = scoring.first_row
        for chunk in chunked(rows, chunk_rows):
            if scorer is not None:
                chunk_scoring = dataclasses.replace(scoring, first_row=first)
                chunk = list(without_scratch(score_rows(scorer, with_prompt_messages(chunk, options.columns),
                                                        chunk_scoring)))
            part = DPOSummary()
            pairs = list(format_dpo(chunk, options, part, first_row=first))
            tally = part.tally()
            if not pairs and not summary.pairs and not schemas:
                tally.update(_would_be_schema(chunk, options))
            yield Chunk(pairs, len(chunk), tally)
            first += len(chunk)

    summary = DPOSummary()
    schemas: list[str] = []  # the EMPTY_SCHEMA of each committed chunk that has one, in order

    def on_tally(tally: dict[str, Any]) -> None:
        summary.add(tally)
        if EMPTY_SCHEMA in tally:
            schemas.append(tally[EMPTY_SCHEMA])

    def finish(out: CommittedOutput) -> None:
        if not out.rows_out and isinstance(out.format, (Csv, Parquet)):
            out.format.empty_schema = _read_schema(schemas[0]) if schemas else \
                parquet_schema([example_pair(None, options)])
        if job.as_dataset:
            _save_dataset(out, job.output)
        else:
            out.finish()

    run_committed(job, run_identity("dpo", job, scorer, settings), scoring, step, on_tally=on_tally,
                  fmt="parquet" if job.as_dataset else None, info=run_info(scorer), finish=finish)
    return summary


def _would_be_schema(rows: list[Any], options: DPOOptions) -> dict[str, str]:
    """{EMPTY_SCHEMA: the Parquet schema of the rows' would-be pairs, as text}; empty if no row could give one."""
    examples = [pair for row in rows if (pair := example_pair(row, options)) is not None]
    if not examples:
        return {}
    return {EMPTY_SCHEMA: base64.b64encode(parquet_schema(examples).serialize().to_pybytes()).decode("ascii")}


def _read_schema(text: str) -> Any:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _save_dataset(out: CommittedOutput, target: Path) -> None:
    import datasets

    staged = out.assemble()
    saved = out.folder / "dataset"
    if out.rows_out:
        datasets.Dataset.from_parquet(str(staged)).save_to_disk(str(saved))
    else:
        import pyarrow.parquet as pq

        # datasets reads no Parquet file without rows ("BatchSize must be greater than 0"), and load_from_disk
        # cannot open a dataset saved as no shard, which is how save_to_disk saves one without rows
        schema = pq.read_schema(staged)
        empty = datasets.Dataset.from_dict({name: [] for name in schema.names},
                                           features=datasets.Features.from_arrow_schema(schema))
        empty.save_to_disk(str(saved), num_shards=1)
    if target.exists():
        shutil.rmtree(target)
    os.replace(saved, target)
    out.discard()
