"""`rewardmill inspect`: what rewardmill detected for a model."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..errors import RewardmillError
from .common import model_or_default, quiet_transformers
from .flags import model_spec, with_model_flags
from .reporting import fail

SHORT_HELP = "Show what rewardmill detected for MODEL (family, what is called, how the score is read)."


@with_model_flags
def inspect(
    model: Annotated[Optional[str], typer.Argument(
        help="Hub id or local directory, or the baseline 'length' (default: the model `score` uses without -m).",
        show_default=False)] = None,
    **model_flags: Any,
) -> None:
    """Show what rewardmill detected for MODEL (family, what is called, how the score is read)."""
    quiet_transformers()
    try:
        report = model_spec(model_or_default(model), model_flags).scorer().describe()
    except RewardmillError as error:
        fail(str(error))
        return
    width = max(len(key) for key in report)
    for key, value in report.items():
        typer.echo(f"{key:<{width}}  {value}")
