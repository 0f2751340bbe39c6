"""`rewardmill score`: every row of a file scored with a reward model (or a baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import OptionsError, RewardmillError
from ..option_fields import COLUMNS, ENGINE
from ..rows.shapes import Columns
from .common import (
    ActorsOpt,
    AllowErrorsOpt,
    BatchRowsOpt,
    ChunkOpt,
    EncodingOpt,
    GpusOpt,
    InputArg,
    MergeOpt,
    ModelOpt,
    NormalizeOpt,
    OutputOpt,
    OverwriteOpt,
    ProgressOpt,
    RayAddressOpt,
    RayOpt,
    ResumeOpt,
    ShapeChoice,
    ShapeOpt,
    SplitOpt,
    StrictOpt,
    model_or_default,
    normalized,
    quiet_transformers,
    read_calibration,
    shape_of,
)
from .flags import model_spec, with_model_flags
from .ray import score_on_ray
from .reporting import fail, report_errors, resumed, run_resumable

SHORT_HELP = ("Score every row of INPUT with a reward model (or a baseline) and write it, with all its columns, "
              "to OUTPUT.")


def resumed_spec(spec, output: Path, resume: bool):
    """With --resume, the spec with the interrupted run's automatic choices (kernel, threads, batch shapes...), so
    the resumed run scores as it did instead of timing and choosing again."""
    if not resume:
        return spec
    from ..runs.checkpoint import recorded_choices

    return spec.reusing(recorded_choices(output))


@with_model_flags
def score(
    input: InputArg,
    output: OutputOpt,
    model: ModelOpt = None,
    shape: ShapeOpt = ShapeChoice("auto"),
    strict: StrictOpt = False,
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    chunk_rows: ChunkOpt = 2048,
    progress: ProgressOpt = None,
    allow_errors: AllowErrorsOpt = False,
    cache: Annotated[Optional[Path], typer.Option(
        help="Folder of a score cache (SQLite) reused across runs: an input already scored by the same model and "
        "settings is not scored again.", rich_help_panel=ENGINE)] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    normalize: NormalizeOpt = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = 1,
    gpus_per_actor: GpusOpt = 0.0,
    batch_rows: BatchRowsOpt = 256,
    merge: MergeOpt = True,
    conversation_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Input: list of {role, content} ending with an assistant turn.")] = "conversation",
    instruction_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Input: the user prompt.")] = "instruction",
    response_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Input: one response to the instruction.")] = "response",
    responses_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Input: a list of responses to the instruction.")] = "responses",
    messages_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Input: the prompt conversation.")] = "messages",
    generations_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Input: a list of generated answers to the messages (or to the instruction).")] = "generations",
    score_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Output for conversation and instruction+response rows.")] = "score",
    scores_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Output for instruction+responses rows.")] = "scores",
    ratings_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Output for messages+generations and instruction+generations rows.")] = "ratings",
    error_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS,
        help="Output: why a row (or item) was not scored; null when it was.")] = "error",
    **model_flags: Any,
) -> None:
    """Score every row of INPUT with a reward model (or a baseline) and write it, with all its columns, to OUTPUT.

    INPUT may also be a dataset id on the Hugging Face hub (user/name, with --split). The output appears only when
    the run succeeds; an earlier file of that name stays as it was otherwise, and the chunks committed so far stay
    in OUTPUT.partial/ for --resume. An input without rows gives an empty output and exit code 0."""
    from ..rows.scoring import RowOptions
    from ..runs.job import open_job, run_job

    quiet_transformers()
    try:
        # paths, formats and a partial run in the way are checked before any model loads
        job = open_job(str(input), output, split=split, resume=resume, overwrite=overwrite, encoding=encoding)
        columns = Columns(
            conversation=conversation_column, instruction=instruction_column, response=response_column,
            responses=responses_column, messages=messages_column, generations=generations_column,
            score=score_column, scores=scores_column, ratings=ratings_column, error=error_column,
        )
        row_options = RowOptions(columns=columns, shape=shape_of(shape), strict=strict, chunk_rows=chunk_rows)
        if cache is not None and not ray:
            from ..runs.preflight import check_score_cache

            check_score_cache(cache)
        calibration = read_calibration(normalize)
        model = model_or_default(model)
        spec = resumed_spec(model_spec(model, model_flags), output, resume and not ray)
        if ray:
            score_on_ray(input, output, spec.scorer, row_options, resume=resume, overwrite=overwrite,
                         address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor, batch_rows=batch_rows,
                         merge=merge, unsupported={"--cache": cache, "--normalize": normalize,
                                                   "--encoding": None if encoding == "utf-8" else encoding},
                         allow_errors=allow_errors)
            return
        scorer = spec.scorer()
        if cache is not None:
            if not hasattr(scorer, "use_cache"):
                raise OptionsError(f"--cache applies to reward models, not the {model} baseline")
            scorer.use_cache(cache)  # before the identity is first read: the weights' digests go beside the cache
        scorer = normalized(scorer, calibration)
        summary = run_resumable(lambda: run_job(job, scorer, row_options, progress=progress), output)
    except RewardmillError as error:
        fail(str(error))
        return
    if summary.rows == 0:
        typer.secho(f"{input} has no rows; wrote an empty {output}", fg=typer.colors.YELLOW, err=True)
        return
    typer.echo(
        f"scored {summary.rows} rows{resumed(summary.resumed_rows)} in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:.1f} rows/s) -> {summary.output}",
        err=True,
    )
    report_errors(summary, columns.error, allow_errors)
