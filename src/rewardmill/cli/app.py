"""The `rewardmill` command line: a thin typer layer over the Python API, one module per command.

Each command's flags are generated from the option fields of the API's option groups (`flags`), and it builds the
API's objects from them (a `ModelSpec`, a `JudgeSpec`), so a renamed option cannot silently drop a flag. Only
rewardmill's own errors become a one-line message; anything else is a bug and keeps its traceback. Command
modules import torch and the rest of the heavy machinery only in their bodies: `--help` stays fast.
"""

from __future__ import annotations

import typer

from . import calibrate, dpo, inspect, judge, score, serve
from . import eval as evaluate

app = typer.Typer(
    help="Score datasets with reward models, correctly and fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# short_help: each command's whole first sentence on one line (click would cut a long one at 45 characters).
app.command(short_help=score.SHORT_HELP)(score.score)
app.command(short_help=judge.SHORT_HELP)(judge.judge)
app.command(short_help=dpo.SHORT_HELP)(dpo.dpo)
app.command(short_help=serve.SHORT_HELP)(serve.serve)
app.command(short_help=calibrate.SHORT_HELP)(calibrate.calibrate)
app.command("eval", short_help=evaluate.SHORT_HELP)(evaluate.eval_command)
app.command(short_help=inspect.SHORT_HELP)(inspect.inspect)
