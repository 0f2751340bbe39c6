"""Options and steps several commands share: input and output, rows, resuming, --normalize, Ray, the model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import OptionsError
from ..option_fields import ENGINE, INPUT, LOAD, OUTPUTS, RAY
from ..rows.shapes import SHAPES, Shape
from ..scorer import Scorer
from .flags import choice_type

ShapeChoice = choice_type(("auto", *SHAPES))

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m",
    help="Hub id or local directory, or the baseline 'length' (score = response characters). Default: a small hub "
    "reward model, or offline the MiniLM relevance fallback.", rich_help_panel=LOAD)]
NormalizeOpt = Annotated[Optional[Path], typer.Option(
    help="A calibration file from `rewardmill calibrate`: report every score as (score - mean) / std of the model's "
    "scores on that reference set (refused if it was made for another model or options).", rich_help_panel=OUTPUTS)]
ShapeOpt = Annotated[ShapeChoice, typer.Option(
    help="Row shape (auto: per row, among the shapes that share the first row's output column).",
    rich_help_panel=INPUT)]
StrictOpt = Annotated[bool, typer.Option("--strict",
    help="Abort on the first bad row instead of writing its error into the error column.", rich_help_panel=INPUT)]
EncodingOpt = Annotated[str, typer.Option(
    help="Text encoding of a JSONL, JSON or CSV input (e.g. latin-1, cp1252); a UTF-8 byte-order mark is dropped "
    "either way.", rich_help_panel=INPUT)]
SplitOpt = Annotated[Optional[str], typer.Option(
    help="Split to read from a saved DatasetDict or a hub dataset.", rich_help_panel=INPUT)]
ChunkOpt = Annotated[int, typer.Option(
    help="Rows read, scored and written at a time (bounds memory).", rich_help_panel=ENGINE)]
ProgressOpt = Annotated[Optional[bool], typer.Option("--progress/--no-progress",
    help="A progress bar (default: on a terminal; elsewhere, such as a log file, a line every 30 s; --no-progress: "
    "neither).", show_default=False)]
OutputOpt = Annotated[Path, typer.Option("--output", "-o",
    help="Where to write: .jsonl, .json, .parquet or .csv (by extension); never the input file.", show_default=False)]
InputArg = Annotated[Path, typer.Argument(
    help="Rows: .jsonl(.gz), .json, .csv, .parquet, a saved datasets directory, or a hub dataset id.",
    show_default=False)]
AllowErrorsOpt = Annotated[bool, typer.Option("--allow-errors",
    help="Exit 0 even when rows failed while scoring (the model raised, a request failed, an answer did not parse); "
    "such rows always keep their error in the output.")]
ResumeOpt = Annotated[bool, typer.Option("--resume",
    help="Continue an interrupted run of this command from its last committed chunk (kept in OUTPUT.partial/); "
    "refused if the input, model or settings changed. The result is the file an uninterrupted run writes, byte "
    "for byte.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite",
    help="Throw away what an interrupted run of this output left in OUTPUT.partial/ and start over.")]

RayOpt = Annotated[bool, typer.Option("--ray",
    help="Run on Ray Data: a pool of actors, each with its own scorer, on this machine or a cluster (pip install "
    "'rewardmill\\[ray]').", rich_help_panel=RAY)]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    help="Ray cluster address (default: start Ray here).", rich_help_panel=RAY)]
ActorsOpt = Annotated[int, typer.Option(
    help="Actors in the pool, each holding one scorer (one copy of the model).", rich_help_panel=RAY)]
GpusOpt = Annotated[float, typer.Option(
    help="GPUs each actor reserves (e.g. 1 for an 8B model, 2 for a 70B one on 80 GB GPUs).", rich_help_panel=RAY)]
BatchRowsOpt = Annotated[int, typer.Option(
    help="Rows per Ray batch (each committed as one part).", rich_help_panel=RAY)]
MergeOpt = Annotated[bool, typer.Option("--merge/--no-merge",
    help="After the run, merge the parts (OUTPUT.parts/) into OUTPUT in input order; without it the parts are the "
    "output.", rich_help_panel=RAY)]


def shape_of(choice: Any) -> Shape | None:
    """--shape: None for auto (per row), else the shape."""
    return None if choice.value == "auto" else Shape(choice.value)


def read_calibration(normalize: Path | None):
    """--normalize FILE read (before any model loads), or None."""
    if normalize is None:
        return None
    from ..evaluation.calibration import Calibration

    return Calibration.load(normalize)


def normalized(scorer: Scorer, calibration) -> Scorer:
    """The scorer with a --normalize calibration applied (reward models only)."""
    if calibration is None:
        return scorer
    if not hasattr(scorer, "normalize_with"):
        raise OptionsError(f"--normalize applies to reward models, not {scorer.name}")
    return scorer.normalize_with(calibration)


def model_or_default(model: str | None) -> str:
    """The model asked for, or the default one (said on stderr: offline it is not a reward model)."""
    if model is not None:
        return model
    from ..reward_models.defaults import resolve_default_model

    chosen = resolve_default_model()
    typer.secho(chosen.note, fg=typer.colors.YELLOW, err=True)
    return chosen.name


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()
