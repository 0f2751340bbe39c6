"""`rewardmill judge`: every row of a file judged by an LLM; its flags are `JudgeSpec`'s fields."""

from __future__ import annotations

from typing import Any

import typer

from ..errors import RewardmillError
from ..judges.spec import JudgeSpec
from ..urls import shown as shown_url
from .common import (
    ActorsOpt,
    AllowErrorsOpt,
    BatchRowsOpt,
    ChunkOpt,
    EncodingOpt,
    GpusOpt,
    InputArg,
    MergeOpt,
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
    quiet_transformers,
    shape_of,
)
from .flags import build, with_flags
from .ray import score_on_ray
from .reporting import fail, report_errors, resumed, run_resumable

SHORT_HELP = "Judge every row of INPUT with an LLM and write it, with all its columns, to OUTPUT."


@with_flags(JudgeSpec, after="output")
def judge(
    input: InputArg,
    output: OutputOpt,
    shape: ShapeOpt = ShapeChoice("auto"),
    strict: StrictOpt = False,
    allow_errors: AllowErrorsOpt = False,
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    chunk_rows: ChunkOpt = 256,
    progress: ProgressOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = 1,
    gpus_per_actor: GpusOpt = 0.0,
    batch_rows: BatchRowsOpt = 256,
    merge: MergeOpt = True,
    **judge_flags: Any,
) -> None:
    """Judge every row of INPUT with an LLM and write it, with all its columns, to OUTPUT."""
    from ..rows.scoring import RowOptions
    from ..runs.job import open_job, run_job

    try:
        spec = build(JudgeSpec, judge_flags)
        options = RowOptions(shape=shape_of(shape), strict=strict, chunk_rows=chunk_rows)
        if spec.engine == "transformers":
            quiet_transformers()
        job = open_job(str(input), output, split=split, resume=resume, overwrite=overwrite, encoding=encoding)
        cache = judge_flags["cache"]
        if cache is not None:
            from ..runs.preflight import check_answer_cache

            check_answer_cache(cache)
        if ray:
            score_on_ray(input, output, spec.scorer, options, resume=resume, overwrite=overwrite, address=ray_address,
                         actors=actors, gpus_per_actor=gpus_per_actor, batch_rows=batch_rows, merge=merge,
                         unsupported={"--encoding": None if encoding == "utf-8" else encoding},
                         allow_errors=allow_errors)
            return
        scorer = spec.scorer()
        summary = run_resumable(lambda: run_job(job, scorer, options, progress=progress, command="judge"), output)
    except RewardmillError as error:
        fail(str(error))
        return
    counts = ", ".join(f"{name} {count}" for name, count in sorted(scorer.stats.items())) or "no requests"
    where = f"at {shown_url(spec.base_url)}" if spec.base_url else f"({scorer.backend.describe()['backend']})"
    typer.echo(f"judged {summary.rows} rows{resumed(summary.resumed_rows)} in {summary.seconds:.1f} s with "
               f"{spec.model} {where} ({spec.settings.describe()}) -> {summary.output}; {counts}", err=True)
    report_errors(summary, "error", allow_errors)
