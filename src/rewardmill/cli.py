"""The `rewardmill` command line: a thin typer layer over the Python API."""

from __future__ import annotations

import inspect as inspect_module
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .adapters import KINDS
from .io import InputError
from .loading import DTYPES, ModelLoadError
from .rows import Columns, RowError, Shape

app = typer.Typer(
    help="Score datasets with reward models, correctly and fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Kind = Enum("Kind", {k: k for k in KINDS}, type=str)  # type: ignore[misc]
DTypeChoice = Enum("DTypeChoice", {d: d for d in DTYPES}, type=str)  # type: ignore[misc]


class TruncationChoice(str, Enum):
    error = "error"
    left = "left"
    right = "right"


class KernelChoice(str, Enum):
    auto = "auto"
    torch = "torch"
    onednn = "onednn"


class PaddingChoice(str, Enum):
    left = "left"
    right = "right"


class ShapeChoice(str, Enum):
    auto = "auto"
    conversation = "conversation"
    instruction_response = "instruction+response"
    instruction_responses = "instruction+responses"
    messages_generations = "messages+generations"


LOAD = "Model loading"
INPUT = "Input handling"
ENGINE = "Batching"
COLUMNS = "Column names"
OUTPUTS = "Extra outputs"

KindOpt = Annotated[Kind, typer.Option("--kind", help="Model family: auto-detect from the config, or force one.", rich_help_panel=LOAD)]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).", rich_help_panel=LOAD)]
DTypeOpt = Annotated[DTypeChoice, typer.Option("--dtype", help="default = bf16 on GPU, fp32 on CPU; auto = as saved.", rich_help_panel=LOAD)]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda if available).", rich_help_panel=LOAD)]
DeviceMapOpt = Annotated[Optional[str], typer.Option(help="Passed to from_pretrained, e.g. auto (spreads a large model over GPUs).", rich_help_panel=LOAD)]
RemoteOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Allow running Python code shipped with the model (off by default: read that code first).", rich_help_panel=LOAD)]
TokenOpt = Annotated[Optional[str], typer.Option(help="Hub token (never printed). Without it, HF_TOKEN or the hub login is used.", rich_help_panel=LOAD, show_default=False)]
AttnOpt = Annotated[Optional[str], typer.Option(help="Attention implementation: sdpa, eager, flash_attention_2.", rich_help_panel=LOAD)]
MaxLenOpt = Annotated[Optional[int], typer.Option(help="Longest input in tokens (default: the model's limit).", rich_help_panel=INPUT)]
TruncOpt = Annotated[TruncationChoice, typer.Option(help="Over-long inputs: error (per-row error), left (cut the start, keep BOS) or right (cut the end).", rich_help_panel=INPUT)]
TemplateOpt = Annotated[Optional[str], typer.Option(help="Chat template (Jinja string or file) for models without one, or to override it.", rich_help_panel=INPUT)]
LabelOpt = Annotated[Optional[str], typer.Option(help="For multi-label heads: the label name or index to use as score.", rich_help_panel=INPUT)]
AlphaOpt = Annotated[Optional[float], typer.Option(help="Reward multiplier for pair-input models: passed as forward(alpha=...) when the model takes it, else multiplies the score.", rich_help_panel=INPUT)]
TypesOpt = Annotated[Optional[bool], typer.Option("--token-type-ids/--no-token-type-ids", help="Pair-input models: pass token_type_ids (default: when tokenizer and model use them).", rich_help_panel=INPUT, show_default=False)]
PaddingOpt = Annotated[Optional[PaddingChoice], typer.Option(help="Padding side to use (default: what the model family or the quirks table needs; scores do not depend on it).", rich_help_panel=INPUT, show_default=False)]
AllLabelsOpt = Annotated[bool, typer.Option("--all-labels", help="Multi-label heads: add one output column per label (logit_NAME or prob_NAME).", rich_help_panel=OUTPUTS)]
ProbOpt = Annotated[bool, typer.Option("--probabilities", help="Classifier heads: softmax probabilities (sigmoid for one label) instead of logits.", rich_help_panel=OUTPUTS)]
ObjectivesOpt = Annotated[bool, typer.Option("--objectives", help="Multi-objective models (ArmoRM style): one column per objective, named from the config or quirks table, else objective_N.", rich_help_panel=OUTPUTS)]
GatingOpt = Annotated[bool, typer.Option("--gating", help="Multi-objective models: add the gating weights as gating_NAME columns.", rich_help_panel=OUTPUTS)]
RewardTokenOpt = Annotated[Optional[int], typer.Option(help="Reward-token models (InternLM2 style): the token id appended to read the score at (default: from the model or quirks table).", rich_help_panel=INPUT)]
ModelKwargOpt = Annotated[Optional[list[str]], typer.Option("--model-kwarg", help="KEY=VALUE passed to every forward call (VALUE parsed as JSON when it can be, e.g. alpha=10); repeatable.", rich_help_panel=INPUT, show_default=False)]
QuirksOpt = Annotated[Optional[Path], typer.Option(help="JSON file of extra model quirks (see the README), tried before the built-in table.", rich_help_panel=LOAD)]
BatchOpt = Annotated[Optional[int], typer.Option(help="Most rows in one forward pass (default: 16 on CPU, 128 on GPU; measured in docs/benchmarks.md).", rich_help_panel=ENGINE)]
TokensOpt = Annotated[Optional[int], typer.Option(help="Most padded tokens (rows x longest row) in one forward pass (default: 1024 on CPU, 16384 on GPU).", rich_help_panel=ENGINE)]
ThreadsOpt = Annotated[str, typer.Option(help="CPU threads for torch: a number, or auto (time 1 thread and all cores on the model's largest layer and keep the faster).", rich_help_panel=ENGINE)]
KernelOpt = Annotated[KernelChoice, typer.Option("--cpu-kernel", help="fp32 matmul kernel on CPU: auto (time torch's MKL and oneDNN on the model's largest layer, keep the faster), torch or onednn.", rich_help_panel=ENGINE)]


def parse_model_kwargs(pairs: list[str] | None) -> dict:
    """KEY=VALUE strings -> dict, VALUE parsed as JSON when possible (alpha=10 -> 10, name=x -> 'x')."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--model-kwarg expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    return kwargs


def _load(model: str, params: dict):
    """RewardModel.from_pretrained with every model option among a command's parameters (enums unwrapped)."""
    from . import RewardModel

    accepted = set(inspect_module.signature(RewardModel.from_pretrained).parameters) - {"name", "model_kwargs"}
    options = {name: value.value if isinstance(value, Enum) else value for name, value in params.items() if name in accepted}
    if isinstance(options.get("threads"), str) and options["threads"] != "auto":
        if not options["threads"].isdigit() or int(options["threads"]) < 1:
            raise ValueError(f"--threads takes a positive number or auto, got {options['threads']!r}")
        options["threads"] = int(options["threads"])
    return RewardModel.from_pretrained(model, model_kwargs=parse_model_kwargs(params.get("model_kwarg")), **options)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()


@app.command()
def score(
    input: Annotated[Path, typer.Argument(help="Rows to score: .jsonl, .json, .csv, .parquet, or a saved datasets directory.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write: .jsonl, .parquet or .csv (by extension).", show_default=False)],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local directory. Default: a small hub reward model, or offline the MiniLM relevance fallback.", rich_help_panel=LOAD)] = None,
    kind: KindOpt = Kind("auto"),
    revision: RevisionOpt = None,
    dtype: DTypeOpt = DTypeChoice("default"),
    device: DeviceOpt = None,
    device_map: DeviceMapOpt = None,
    trust_remote_code: RemoteOpt = False,
    token: TokenOpt = None,
    attn_implementation: AttnOpt = None,
    max_length: MaxLenOpt = None,
    truncation: TruncOpt = TruncationChoice.error,
    chat_template: TemplateOpt = None,
    label: LabelOpt = None,
    alpha: AlphaOpt = None,
    token_type_ids: TypesOpt = None,
    padding_side: PaddingOpt = None,
    reward_token_id: RewardTokenOpt = None,
    model_kwarg: ModelKwargOpt = None,
    quirks: QuirksOpt = None,
    all_labels: AllLabelsOpt = False,
    probabilities: ProbOpt = False,
    objectives: ObjectivesOpt = False,
    gating: GatingOpt = False,
    batch_size: BatchOpt = None,
    max_tokens_per_batch: TokensOpt = None,
    threads: ThreadsOpt = "auto",
    cpu_kernel: KernelOpt = KernelChoice.auto,
    shape: Annotated[ShapeChoice, typer.Option(help="Row shape (auto: from the column names of the first row).", rich_help_panel=INPUT)] = ShapeChoice.auto,
    strict: Annotated[bool, typer.Option("--strict", help="Abort on the first bad row instead of writing its error into the error column.", rich_help_panel=INPUT)] = False,
    split: Annotated[Optional[str], typer.Option(help="Split to read from a saved DatasetDict.", rich_help_panel=INPUT)] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows read, scored and written at a time (bounds memory).", rich_help_panel=ENGINE)] = 2048,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar (default: only on a terminal).", show_default=False)] = None,
    conversation_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: list of {role, content} ending with an assistant turn.")] = "conversation",
    instruction_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: the user prompt.")] = "instruction",
    response_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: one response to the instruction.")] = "response",
    responses_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: a list of responses to the instruction.")] = "responses",
    messages_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: the prompt conversation.")] = "messages",
    generations_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: a list of generated answers to the messages.")] = "generations",
    score_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output for conversation and instruction+response rows.")] = "score",
    scores_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output for instruction+responses rows.")] = "scores",
    ratings_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output for messages+generations rows.")] = "ratings",
    error_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output: why a row (or item) was not scored; null when it was.")] = "error",
) -> None:
    """Score every row of INPUT with a reward model and write it, with all its columns, to OUTPUT."""
    params = dict(locals())
    from .defaults import resolve_default_model
    from .pipeline import score_file

    _quiet_transformers()
    columns = Columns(
        conversation=conversation_column, instruction=instruction_column, response=response_column,
        responses=responses_column, messages=messages_column, generations=generations_column,
        score=score_column, scores=scores_column, ratings=ratings_column, error=error_column,
    )
    try:
        if model is None:
            chosen = resolve_default_model(token)
            typer.secho(chosen.note, fg=typer.colors.YELLOW, err=True)
            model = chosen.name
        scorer = _load(model, params)
        summary = score_file(
            input, output, scorer, columns=columns, shape=None if shape is ShapeChoice.auto else Shape(shape.value),
            strict=strict, split=split, chunk_rows=chunk_rows, progress=progress,
        )
    except (ModelLoadError, InputError, RowError, ValueError) as error:
        _fail(str(error))
        return
    typer.echo(
        f"scored {summary.rows} rows in {summary.seconds:.1f} s ({summary.rows_per_second:.1f} rows/s) -> {summary.output}",
        err=True,
    )
    if summary.rows_with_errors:
        count = summary.rows_with_errors
        typer.secho(f"{count} row{'s have' if count > 1 else ' has'} errors (see the '{columns.error}' column), e.g.:",
                    fg=typer.colors.YELLOW, err=True)
        for message in summary.errors[:10]:
            typer.echo(f"  {message}", err=True)


@app.command()
def inspect(
    model: Annotated[str, typer.Argument(help="Hub id or local directory.", show_default=False)],
    kind: KindOpt = Kind("auto"),
    revision: RevisionOpt = None,
    dtype: DTypeOpt = DTypeChoice("default"),
    device: DeviceOpt = None,
    trust_remote_code: RemoteOpt = False,
    token: TokenOpt = None,
    max_length: MaxLenOpt = None,
    chat_template: TemplateOpt = None,
    label: LabelOpt = None,
    alpha: AlphaOpt = None,
    token_type_ids: TypesOpt = None,
    padding_side: PaddingOpt = None,
    reward_token_id: RewardTokenOpt = None,
    model_kwarg: ModelKwargOpt = None,
    quirks: QuirksOpt = None,
    all_labels: AllLabelsOpt = False,
    probabilities: ProbOpt = False,
    objectives: ObjectivesOpt = False,
    gating: GatingOpt = False,
    threads: ThreadsOpt = "auto",
    cpu_kernel: KernelOpt = KernelChoice.auto,
) -> None:
    """Show what rewardmill detected for MODEL (family, what is called, how the score is read)."""
    params = dict(locals())
    _quiet_transformers()
    try:
        scorer = _load(model, params)
    except (ModelLoadError, ValueError) as error:
        _fail(str(error))
        return
    report = scorer.describe()
    width = max(len(key) for key in report)
    for key, value in report.items():
        typer.echo(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    app()
