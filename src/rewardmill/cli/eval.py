"""`rewardmill eval`: reward models, judges and baselines evaluated on preference pairs, with an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import OptionsError, RewardmillError
from ..option_fields import JUDGE
from ..scorer import Scorer
from .common import ChunkOpt, EncodingOpt, InputArg, SplitOpt, quiet_transformers
from .flags import model_spec, with_model_flags
from .judged import local_judge_flags, refuse_for_local_judge
from .reporting import fail, grouped_errors, percent

SHORT_HELP = "Evaluate reward models, judges and baselines on preference pairs (chosen vs rejected)."
EVAL_EXTRA = "pip install 'rewardmill[eval]'"
LAYOUTS = ("pairs", "hh-rlhf", "llmbar")  # evaluation.layouts.LAYOUTS, which imports numpy
JUDGE_TASKS = ("pairwise", "rating")


@with_model_flags
def eval_command(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o",
        help="Report folder: report.json, pairs.parquet and index.html.", show_default=False)],
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m",
        help="A scorer, repeatable: a reward model (hub id or local directory), or the baselines 'length' and "
        "'random'.", show_default=False)] = None,
    layout: Annotated[Optional[str], typer.Option(
        help="pairs, hh-rlhf or llmbar (default: detected from the first row).",
        metavar=f"<{'|'.join(LAYOUTS)}>")] = None,
    judge_task: Annotated[Optional[str], typer.Option(
        help="Also evaluate an LLM judge: pairwise (A/B verdicts in both orders; a tie counts as wrong) or rating.",
        rich_help_panel=JUDGE, metavar=f"<{'|'.join(JUDGE_TASKS)}>")] = None,
    judge_model: Annotated[Optional[str], typer.Option(
        help="The judge model: its name on the server with --base-url, else a local model (run with transformers; "
        "--device, --dtype and --batch-size apply to it too).", rich_help_panel=JUDGE)] = None,
    base_url: Annotated[Optional[str], typer.Option(
        help="OpenAI-compatible server of the judge.", rich_help_panel=JUDGE)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals and of -m random.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 1000,
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    chunk_rows: ChunkOpt = 2048,
    **model_flags: Any,
) -> None:
    """Evaluate reward models, judges and baselines on preference pairs (chosen vs rejected): accuracy with 95%
    bootstrap intervals, per subset, margins, length bias, agreement; writes an HTML report."""
    from ..evaluation import Evaluation, load_pairs, score_pairs, scorer_label
    from ..evaluation.report import write_report
    from ..reward_models.baselines import BASELINES, RandomScorer, baseline
    from ..runs.preflight import check_writable_folder, has_module, open_input

    quiet_transformers()
    try:
        pairs, input_errors, found = load_pairs(open_input(str(input), split, encoding).rows, layout)
        check_writable_folder(output, f"report folder {output}")
        html = has_module("matplotlib")
        if not html:
            typer.secho(f"matplotlib is not installed, so {output / 'index.html'} will not be written (report.json "
                        f"and pairs.parquet will); for the page: {EVAL_EXTRA}", fg=typer.colors.YELLOW, err=True)
        names = list(model or [])
        if not names and judge_task is None:
            raise OptionsError("give at least one scorer: -m MODEL (repeatable; 'length' and 'random' are baselines) "
                               "or --judge-task with --judge-model")
        local_judge = judge_task is not None and base_url is None
        if not [name for name in names if name not in BASELINES]:
            refuse_unused(local_judge, model_flags)
        taken: set[str] = set()
        runs = []
        for name in names:
            scorer = RandomScorer(seed) if name == "random" else \
                baseline(name) or model_spec(name, model_flags).scorer()
            runs.append(score_pairs(pairs, scorer, scorer_label(name, taken), chunk=chunk_rows))
        if judge_task is not None:
            judge_flags = local_judge_flags(model_flags) if local_judge else {}
            runs.append(score_pairs(pairs, eval_judge(judge_task, judge_model, base_url, judge_flags),
                                    scorer_label(f"{judge_model} ({judge_task} judge)", taken), chunk=chunk_rows))
        evaluation = Evaluation(pairs, runs, seed=seed, resamples=bootstrap, input_errors=input_errors)
        summary = write_report(evaluation, output, title=f"rewardmill eval: {Path(str(input)).name}", source=str(input),
                               html=html)
    except RewardmillError as error:
        fail(str(error))
        return
    count = len(input_errors)
    unusable = f", {count} row{'s' if count > 1 else ''} not usable, by reason (rows numbered from 0):" if count else ""
    typer.echo(f"{len(pairs)} pairs ({found} layout){unusable}", err=True)
    grouped_errors(input_errors)
    for name, entry in summary["scorers"].items():
        low, high = entry["ci95"]
        typer.echo(f"  {name}: accuracy {percent(entry['accuracy'])} (95% {percent(low)}-{percent(high)}, "
                   f"n={entry['n']}, errors {entry['errors']})", err=True)
        from ..rows import error_groups

        for group in entry["errors_by_reason"][:10]:
            typer.echo(f"    {error_groups.line(group)}", err=True)
    if html:
        typer.echo(f"report -> {output / 'index.html'}", err=True)
    else:
        typer.echo(f"report -> {output / 'report.json'} and {output / 'pairs.parquet'}; no index.html without "
                   f"matplotlib: {EVAL_EXTRA}, then run again", err=True)


def eval_judge(task: str, model: str | None, base_url: str | None, judge_flags: dict[str, Any]) -> Scorer:
    from ..judges.spec import JudgeSpec

    if model is None:
        raise OptionsError("--judge-task needs --judge-model")
    if task not in JUDGE_TASKS:
        raise OptionsError(f"--judge-task for eval is pairwise or rating, got {task!r}")
    return JudgeSpec(task, model, base_url=base_url, **judge_flags).scorer()


def refuse_unused(local_judge: bool, model_flags: dict[str, Any]) -> None:
    """With no reward model to evaluate, eval's model flags apply to nothing (baselines ignore them) but, for
    --device, --dtype and --batch-size, a local judge: any other one given is refused."""
    why = "no reward model is evaluated (baselines take no model options" + \
          (", a local judge only --device, --dtype and --batch-size)" if local_judge else ")")
    if local_judge:
        refuse_for_local_judge("eval", model_flags, why)
    else:
        model_spec("eval", model_flags).refuse_model_options(why)
