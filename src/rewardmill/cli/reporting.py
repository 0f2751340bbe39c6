"""What a command says when it ends: summaries, errors grouped by reason, and the exit codes.

Exit codes: 0 done; 2 a rewardmill error (a one-line message; anything else is a bug and keeps its traceback);
3 rows failed while scoring (unless --allow-errors); 130 interrupted (what is committed is kept for --resume).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..rows import error_groups


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def run_resumable(run: Callable[[], Any], output: Path) -> Any:
    """`run()`; on Ctrl-C, say how much is committed and how to continue, and exit 130."""
    from ..runs.checkpoint import committed_rows, partial_folder

    try:
        return run()
    except KeyboardInterrupt:
        done = committed_rows(output)
        where = f"{done} input rows are committed in {partial_folder(output)}; run the same command with --resume " \
                "to continue" if done else "nothing was committed yet"
        typer.secho(f"interrupted: {where}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None


def resumed(rows: int) -> str:
    return f" ({rows} of them committed by the interrupted run this one resumed)" if rows else ""


def report_errors(summary, column: str, allow_errors: bool) -> None:
    """Columns the output format widened; rows with errors, grouped by reason with the first rows of each; then
    failures while scoring, by reason, and the exit code: 3 when any row failed while scoring, unless allowed
    (errors in the rows' content never change it)."""
    if summary.widened:
        typer.secho("to keep every value, the output format made these columns change form:", fg=typer.colors.YELLOW,
                    err=True)
        for name, reason in summary.widened.items():
            typer.echo(f"  '{name}' {reason}", err=True)
    if summary.rows_with_errors:
        count = summary.rows_with_errors
        typer.secho(f"{count} row{'s have' if count > 1 else ' has'} errors (see the '{column}' column), by "
                    "reason (rows numbered from 0):", fg=typer.colors.YELLOW, err=True)
        for line in error_groups.report_lines(summary.error_groups) or summary.errors[:10]:
            typer.echo(f"  {line}", err=True)
    if summary.failures:
        total = sum(summary.failures.values())
        typer.secho(f"{total} failure{'s' if total > 1 else ''} while scoring, by reason:", fg=typer.colors.RED,
                    err=True)
        for reason, count in summary.failures.most_common(10):
            typer.echo(f"  {count} x {reason}", err=True)
        if not allow_errors:
            raise typer.Exit(3)


def grouped_errors(errors: list[str]) -> None:
    """Row errors grouped by reason, one indented line each."""
    for line in error_groups.report_lines(error_groups.group(errors)):
        typer.echo(f"  {line}", err=True)


def percent(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"
