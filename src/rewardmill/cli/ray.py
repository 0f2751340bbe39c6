"""`score --ray` and `judge --ray`: the same rows on a pool of Ray actors, each building its own scorer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import OptionsError
from ..scorer import Scorer
from .reporting import report_errors


def score_on_ray(input: Path, output: Path, make_scorer: Callable[[], Scorer], row_options, *, resume: bool,
                 overwrite: bool, address: str | None, actors: int, gpus_per_actor: float, batch_rows: int, merge: bool,
                 unsupported: dict[str, Any], allow_errors: bool) -> None:
    """Run on Ray; `make_scorer` is called in each actor (a spec's bound `scorer`, so it pickles as the spec). The
    errors are reported as a run in one process reports them, with the same exit code."""
    from ..runs.ray import RayOptions, score_with_ray

    given = [flag for flag, value in unsupported.items() if value is not None]
    if given:
        raise OptionsError(f"{', '.join(given)} cannot be combined with --ray yet")
    options = RayOptions(address=address, actors=actors, gpus_per_actor=gpus_per_actor, batch_rows=batch_rows,
                         merge=merge)
    summary = score_with_ray(input, output, make_scorer, row_options, options, resume=resume, overwrite=overwrite)
    resumed = f" ({summary.resumed_rows} already in the parts)" if summary.resumed_rows else ""
    where = summary.output if merge else \
        f"{summary.output} (Parquet parts with a row_id column; --merge makes one file)"
    typer.echo(f"scored {summary.rows} rows on Ray{resumed} -> {where}", err=True)
    report_errors(summary, row_options.columns.error, allow_errors)
