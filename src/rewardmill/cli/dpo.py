"""`rewardmill dpo`: a DPO preference dataset from rated generations, rated first by a reward model or a judge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import OptionsError, RewardmillError
from ..judges.spec import TASK_CHOICES
from ..judges.tasks import ASPECTS
from ..option_fields import COLUMNS
from ..preferences.formatting import STRATEGIES
from .common import (
    ChunkOpt,
    EncodingOpt,
    InputArg,
    OverwriteOpt,
    ResumeOpt,
    SplitOpt,
    quiet_transformers,
)
from .flags import model_spec, with_model_flags
from .judged import local_judge_flags, refuse_for_local_judge
from .reporting import fail, grouped_errors, run_resumable
from .score import resumed_spec

SHORT_HELP = "Build a DPO preference dataset from rated generations (rating them first with -m when asked)."


@with_model_flags
def dpo(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o",
        help="Where to write the pairs: .jsonl, .json, .parquet or .csv, or a new folder name for a saved datasets "
        "directory (datasets.load_from_disk).", show_default=False)],
    strategy: Annotated[str, typer.Option(
        help="best-worst (seed 004), best-random (the best against a random lower-rated one), all-pairs (every pair "
        "above --min-margin), top-k (the -k pairs with the largest margins).",
        metavar=f"<{'|'.join(STRATEGIES)}>")] = "best-worst",
    min_margin: Annotated[float, typer.Option(
        help="A pair needs ratings that differ by more than this; rows with no such pair are ties, skipped and "
        "counted.")] = 0.0,
    k: Annotated[int, typer.Option("-k", help="top-k: pairs per row.")] = 1,
    seed: Annotated[int, typer.Option(
        help="Seed of best-random's choice (the result is deterministic for a seed).")] = 0,
    trl: Annotated[bool, typer.Option("--trl",
        help="TRL's conversational layout: prompt = the prompt messages, chosen/rejected = the assistant message "
        "alone.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m",
        help="Rate the generations first: a reward model (any family `score` takes), or the judge model with "
        "--judge-task.")] = None,
    judge_task: Annotated[Optional[str], typer.Option(
        help="Rate with an LLM judge instead of a reward model: ultrafeedback (or another task giving one score per "
        "generation).", metavar=f"<{'|'.join(TASK_CHOICES)}>")] = None,
    base_url: Annotated[Optional[str], typer.Option(
        help="With --judge-task: an OpenAI-compatible server (else the judge runs here with transformers and takes "
        "--device, --dtype and --batch-size).")] = None,
    aspect: Annotated[Optional[str], typer.Option(
        help="With --judge-task ultrafeedback: the aspect to rate.", metavar=f"<{'|'.join(ASPECTS)}>")] = None,
    ratings_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Ratings, one per generation (read, or written when -m rates first).")] = "ratings",
    messages_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Chat rows: the prompt conversation.")] = "messages",
    instruction_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Text rows: the instruction.")] = "instruction",
    system_prompt_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Text rows: an optional system prompt.")] = "system_prompt",
    generations_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="The generations to pair.")] = "generations",
    generation_models_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Optional: the model of each generation.")] = "generation_models",
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    chunk_rows: ChunkOpt = 2048,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    **model_flags: Any,
) -> None:
    """Build a DPO preference dataset from rated generations (rating them first with -m when asked)."""
    from ..preferences.formatting import DPOColumns, DPOOptions
    from ..preferences.pipeline import open_dpo_job, run_dpo

    try:
        columns = DPOColumns(messages=messages_column, instruction=instruction_column,
                             system_prompt=system_prompt_column, generations=generations_column,
                             generation_models=generation_models_column, ratings=ratings_column)
        options = DPOOptions(strategy=strategy, min_margin=min_margin, k=k, seed=seed, trl=trl, columns=columns)
        job = open_dpo_job(str(input), output, split=split, resume=resume, overwrite=overwrite, encoding=encoding)
        scorer = None
        if judge_task is not None:
            from ..judges.spec import JudgeSpec

            if model is None:
                raise OptionsError("--judge-task needs -m, the judge model")
            refuse_for_local_judge(
                model, model_flags, "--judge-task rates with an LLM judge (which takes --device, --dtype and "
                "--batch-size), not a reward model")
            spec = JudgeSpec(judge_task, model, base_url=base_url, aspect=aspect, **local_judge_flags(model_flags))
            if spec.engine == "transformers":
                quiet_transformers()
            scorer = spec.scorer()
        elif model is not None:
            quiet_transformers()
            scorer = resumed_spec(model_spec(model, model_flags), output, resume).scorer()
        summary = run_resumable(lambda: run_dpo(job, options, scorer, chunk_rows=chunk_rows), output)
    except RewardmillError as error:
        fail(str(error))
        return
    skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(summary.skipped.items())) or "none"
    typer.echo(f"{summary.rows} rows in, {summary.pairs} pairs out -> {output}; rows skipped: {skipped}; "
               f"rating margins: {summary.margin_summary()}", err=True)
    if summary.errors:
        typer.echo(f"{len(summary.errors)} rows have errors, by reason (rows numbered from 0):", err=True)
    grouped_errors(summary.errors)
