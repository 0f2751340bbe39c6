"""The Python API: `RewardModel.from_pretrained(name, **options)`, then `.score(...)` or `.score_rows(...)`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from . import cpu, engine
from .adapters import ADAPTERS, Adapter, AdapterSettings, Plan, plan_model
from .adapters.base import Encoded, Truncation
from .engine import EngineOptions
from .loading import (
    LoadOptions,
    ModelLoadError,
    default_max_length,
    load_config,
    load_config_dict,
    load_model,
    load_tokenizer,
    read_model_file,
    remote_code_refused,
)
from .quirks import QuirksError, load_quirks
from .rows import (
    Columns,
    Conversation,
    RowError,
    Shape,
    UnreadableRow,
    detect_shape,
    failed,
    output_column,
    fold,
    row_items,
    validate_messages,
)

TRUNCATIONS = ("error", "left", "right")


@dataclass
class _Prepared:
    error: str | None = None
    outputs: list[dict[str, float] | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    encoded: list[tuple[int, Encoded]] = field(default_factory=list)


class RewardModel:
    """A loaded scorer: an adapter (model family) plus the batching engine's options."""

    def __init__(
        self,
        adapter: Adapter,
        *,
        name: str,
        engine_options: EngineOptions,
        plan: Plan | None = None,
        cpu_choice: cpu.CpuChoice | None = None,
    ):
        self.adapter = adapter
        self.cpu_choice = cpu_choice
        self.name = name
        self.plan = plan
        self.engine_options = engine_options.for_device(adapter.device)

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        *,
        kind: str = "auto",
        revision: str | None = None,
        dtype: str = "default",
        device: str | None = None,
        device_map: str | None = None,
        trust_remote_code: bool = False,
        token: str | None = None,
        attn_implementation: str | None = None,
        max_length: int | None = None,
        truncation: Truncation = "error",
        chat_template: str | None = None,
        padding_side: str | None = None,
        label: int | str | None = None,
        all_labels: bool = False,
        probabilities: bool = False,
        alpha: float | None = None,
        token_type_ids: bool | None = None,
        objectives: bool = False,
        gating: bool = False,
        reward_token_id: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        quirks: str | Path | None = None,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        cpu_kernel: str = "auto",
        threads: int | str | None = None,
    ) -> RewardModel:
        """Load a reward model from a hub id or a local directory.

        `kind` is "auto" (detected from the config, the quirks table and the model's code read as text) or one
        of `rewardmill.adapters.ADAPTERS`. `dtype` "default" means bf16 on GPU and fp32 on CPU. `truncation`
        "error" refuses over-long inputs per row. `model_kwargs` are passed to every forward call. `quirks`
        names a JSON file of extra quirk entries. Options left at None take the quirks table's value.
        `batch_size` and `max_tokens_per_batch` default to what measured fastest on the device (see EngineOptions).
        On CPU, `cpu_kernel` "auto" times torch's and oneDNN's fp32 matmul on the model's largest layer and keeps
        the faster; `threads` "auto" also picks the thread count that way (an int sets it; None leaves torch's).
        """
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        if kind != "auto" and kind not in ADAPTERS:
            raise ValueError(f"kind must be auto or one of {', '.join(ADAPTERS)}, got {kind!r}")
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be left or right, got {padding_side!r}")
        options = LoadOptions(
            revision=revision, dtype=dtype, device=device, device_map=device_map,  # type: ignore[arg-type]
            trust_remote_code=trust_remote_code, token=token, attn_implementation=attn_implementation,
        )
        try:
            table = load_quirks(quirks)
        except QuirksError as error:
            raise ModelLoadError(str(error)) from None
        plan = plan_model(
            name, load_config_dict(name, options), kind=kind, quirks=table,
            read_code=lambda filename: read_model_file(name, filename, options),
        )
        if plan.remote_code and not trust_remote_code:
            raise remote_code_refused(name, f"{plan.remote_class or plan.auto_class} for kind {plan.kind}")
        config = load_config(name, options)
        tokenizer = load_tokenizer(name, options)
        quirk = dict(plan.quirk.settings) if plan.quirk else {}
        settings = AdapterSettings(
            max_length=max_length or quirk.get("max_length") or default_max_length(config, tokenizer),
            truncation=truncation,
            chat_template=chat_template or quirk.get("chat_template"),
            bos=quirk.get("bos", "template"),
            padding_side=padding_side or quirk.get("padding_side"),  # type: ignore[arg-type]
            model_kwargs={**quirk.get("model_kwargs", {}), **(model_kwargs or {})},
            label=label,
            all_labels=all_labels,
            probabilities=probabilities,
            alpha=alpha,
            token_type_ids=token_type_ids if token_type_ids is not None else quirk.get("token_type_ids"),
            objectives=objectives,
            gating=gating,
            objective_names=quirk.get("objective_names"),
            reward_token_id=reward_token_id if reward_token_id is not None else quirk.get("reward_token_id"),
        )
        import transformers

        model = load_model(getattr(transformers, plan.auto_class), name, options, config=config)
        adapter = ADAPTERS[plan.kind](model, tokenizer, settings)
        cpu_choice = None
        if next(model.parameters()).device.type == "cpu":
            cpu_choice = cpu.choose(
                model, kernel=cpu_kernel, threads=threads if isinstance(threads, int) else None,
                thread_candidates=cpu.thread_candidates() if threads == "auto" else None,
            )
        return cls(
            adapter,
            name=name,
            plan=plan,
            engine_options=EngineOptions(batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch),
            cpu_choice=cpu_choice,
        )

    # ----------------------------------------------------------------- scoring

    def score(self, inputs: Sequence[Conversation | dict | tuple[str, str]]) -> list[float]:
        """Score conversations, (instruction, response) tuples or rows holding one of the two.

        Raises RowError naming the first bad input; use `score_rows` to get per-row errors instead.
        """
        return [out["score"] for out in self.score_outputs(inputs)]

    def score_outputs(self, inputs: Sequence[Conversation | dict | tuple[str, str]]) -> list[dict[str, float]]:
        """Like `score`, but every output of the model per input (score, objectives, labels...)."""
        conversations = [self._as_conversation(i, value) for i, value in enumerate(inputs)]
        encoded = []
        for i, conversation in enumerate(conversations):
            try:
                encoded.append(self.adapter.encode(conversation))
            except RowError as error:
                raise RowError(f"input {i}: {error.reason}") from None
        return engine.run(self.adapter, encoded, self.engine_options)

    def _as_conversation(self, i: int, value: Any) -> Conversation:
        try:
            if isinstance(value, tuple) and len(value) == 2:
                value = {"instruction": value[0], "response": value[1]}
            if isinstance(value, list):
                return validate_messages(value, "conversation", must_end_with="assistant")
            if isinstance(value, dict):
                shape = detect_shape(value.keys())
                items = row_items(value, shape)
                if shape in (Shape.conversation, Shape.instruction_response):
                    return items.conversations[0]  # type: ignore[return-value]
                raise RowError(f"a {shape.value} row holds several responses; use score_rows()")
            raise RowError(f"expected a conversation, a row or an (instruction, response) tuple, got {type(value).__name__}")
        except RowError as error:
            raise RowError(f"input {i}: {error.reason}") from None

    def score_rows(
        self,
        rows: Iterable[dict],
        *,
        columns: Columns = Columns(),
        shape: Shape | None = None,
        strict: bool = False,
        chunk_rows: int = 2048,
        on_progress: Callable[[float], None] | None = None,
    ) -> Iterator[dict]:
        """Score a stream of rows chunk by chunk; yields each row with its output and error columns, in order.

        A bad row gets its output column set to null and a reason in the error column (or, with
        `strict=True`, raises RowError naming the row). `on_progress` receives completed rows (fractional
        for rows that hold several responses).
        """
        iterator = iter(rows)
        first_index = 0
        while chunk := list(itertools.islice(iterator, chunk_rows)):
            if shape is None:
                shape = _shape_of(chunk, columns, self.adapter.output_names)
            yield from self._score_chunk(chunk, first_index, shape, columns, strict, on_progress)
            first_index += len(chunk)

    def _prepare(self, row: Any, label: str, shape: Shape, columns: Columns, strict: bool) -> _Prepared:
        """Validate and encode one row; bad rows and bad items carry their reasons."""
        try:
            found = row_items(row, shape, columns)
        except RowError as error:
            if strict:
                raise RowError(f"{label}: {error.reason}") from None
            return _Prepared(error=f"{label}: {error.reason}")
        several = shape in (Shape.instruction_responses, Shape.messages_generations)
        item_name = columns.responses if shape is Shape.instruction_responses else columns.generations
        prepared = _Prepared(outputs=[None] * len(found.conversations), errors=list(found.item_errors))
        for k, conversation in enumerate(found.conversations):
            if conversation is not None:
                try:
                    prepared.encoded.append((k, self.adapter.encode(conversation)))
                    continue
                except RowError as error:
                    prepared.errors[k] = f"{item_name}[{k}]: {error.reason}" if several else error.reason
            if strict:
                raise RowError(f"{label}: {prepared.errors[k]}")
            prepared.errors[k] = f"{label}: {prepared.errors[k]}"
        return prepared

    def _score_chunk(self, chunk, first_index, shape, columns, strict, on_progress) -> list[dict]:
        names = self.adapter.output_names
        prepared = [self._prepare(row, f"row {first_index + r}", shape, columns, strict) for r, row in enumerate(chunk)]
        items: list[Encoded] = []
        owners: list[tuple[int, int]] = []  # (row in chunk, position in the row) of each item
        for r, p in enumerate(prepared):
            for k, encoded in p.encoded:
                items.append(encoded)
                owners.append((r, k))
        report = on_progress or (lambda done: None)
        report(float(sum(1 for p in prepared if not p.encoded)))
        weight = [1.0 / len(p.encoded) if p.encoded else 0.0 for p in prepared]
        results = engine.run(
            self.adapter, items, self.engine_options,
            on_batch=lambda indices: report(sum(weight[owners[i][0]] for i in indices)),
        )
        for (r, k), result in zip(owners, results):
            prepared[r].outputs[k] = result
        return [
            failed(row, shape, p.error, columns, names)
            if p.error
            else fold(row, shape, p.outputs, names, p.errors, columns)
            for row, p in zip(chunk, prepared)
        ]

    # -------------------------------------------------------------- reporting

    def describe(self) -> dict[str, str]:
        """What was detected and how scores are computed (used by `rewardmill inspect`)."""
        model = self.adapter.model
        parameter = next(model.parameters())
        engine_options = self.engine_options
        return {
            "model": self.name,
            "detected": self.plan.reason if self.plan else "adapter built by the caller",
            "loaded with": f"{self.plan.auto_class}" + (" (the model's own code)" if self.plan.remote_code else "")
            if self.plan else type(model).__name__,
            **self.adapter.describe(),
            "dtype": str(parameter.dtype).replace("torch.", ""),
            "device": str(parameter.device),
            **({"cpu": self.cpu_choice.note} if self.cpu_choice else {}),
            "batching": f"length-sorted, up to {engine_options.batch_size} rows and "
            f"{engine_options.max_tokens_per_batch} padded tokens per batch, rows at least "
            f"{engine_options.min_fill:.0%} as long as the batch's longest",
        }


def _shape_of(chunk: list, columns: Columns, names: tuple[str, ...]) -> Shape:
    """The shape of the first readable row; the output columns must not exist yet."""
    for index, row in enumerate(chunk):
        if isinstance(row, dict) and not isinstance(row, UnreadableRow):
            try:
                shape = detect_shape(row.keys(), columns)
            except RowError as error:
                raise RowError(f"row {index}: {error.reason}") from None
            _check_output_free(row, shape, columns, names)
            return shape
    raise RowError(f"none of the first {len(chunk)} rows is a readable object")


def _check_output_free(row: dict, shape: Shape, columns: Columns, names: tuple[str, ...]) -> None:
    for name in (*(output_column(n, shape, columns) for n in names), columns.error):
        if name in row:
            raise RowError(
                f"the input already has a '{name}' column; choose other output names "
                "(--score-column/--scores-column/--ratings-column/--error-column) so nothing is overwritten"
            )
