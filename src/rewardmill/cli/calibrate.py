"""`rewardmill calibrate`: the mean and standard deviation of a model's scores on a reference set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import RewardmillError
from .common import (
    ChunkOpt,
    EncodingOpt,
    InputArg,
    ModelOpt,
    ShapeChoice,
    ShapeOpt,
    SplitOpt,
    model_or_default,
    quiet_transformers,
    shape_of,
)
from .flags import model_spec, with_model_flags
from .reporting import fail

SHORT_HELP = "Save the mean and standard deviation of a model's scores on a reference set, for --normalize."


@with_model_flags
def calibrate(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o",
        help="Where to save the calibration (JSON), for --normalize.", show_default=False)],
    model: ModelOpt = None,
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    shape: ShapeOpt = ShapeChoice("auto"),
    chunk_rows: ChunkOpt = 2048,
    **model_flags: Any,
) -> None:
    """Score a reference set (INPUT, any shape `score` reads) and save the mean and standard deviation of the
    scores, for `--normalize` in score and serve. Use the same model options there as here."""
    from ..evaluation.calibration import calibrate_job, open_calibration
    from ..rows.scoring import RowOptions

    quiet_transformers()
    try:
        job = open_calibration(str(input), output, split=split, encoding=encoding)  # before any model loads
        scorer = model_spec(model_or_default(model), model_flags).scorer()
        options = RowOptions(shape=shape_of(shape), chunk_rows=chunk_rows)
        calibration, errors = calibrate_job(job, scorer, options)
    except RewardmillError as error:
        fail(str(error))
        return
    note = f"; {errors} rows had errors and were left out" if errors else ""
    typer.echo(f"calibrated on {calibration.count} scores: mean {calibration.mean:.6g}, std {calibration.std:.6g}"
               f"{note} -> {output}", err=True)
