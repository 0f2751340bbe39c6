"""The Python API: `RewardModel.from_pretrained(name, **options)`, then `.score(...)` or `.score_rows(...)`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import engine
from .adapters import ADAPTERS, Adapter, Detection, detect_kind
from .adapters.base import Encoded, Truncation
from .engine import EngineOptions
from .loading import LoadOptions, ModelLoadError, default_max_length, load_config, load_model, load_tokenizer
from .rows import (
    Columns,
    Conversation,
    RowError,
    Shape,
    UnreadableRow,
    detect_shape,
    failed,
    fold,
    row_items,
    validate_messages,
)

TRUNCATIONS = ("error", "left", "right")


@dataclass
class _Prepared:
    error: str | None = None
    values: list[float | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    encoded: list[tuple[int, Encoded]] = field(default_factory=list)


class RewardModel:
    """A loaded scorer: an adapter (model family) plus the batching engine's options."""

    def __init__(self, adapter: Adapter, *, name: str, detection: Detection, engine_options: EngineOptions):
        self.adapter = adapter
        self.name = name
        self.detection = detection
        self.engine_options = engine_options

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
        label: int | str | None = None,
        alpha: float | None = None,
        token_type_ids: bool | None = None,
        batch_size: int = 64,
        max_tokens_per_batch: int = 4096,
    ) -> RewardModel:
        """Load a reward model from a hub id or a local directory.

        `kind` is "auto" (detected from the config), "classifier", "pair" or "similarity". `dtype` "default"
        means bf16 on GPU and fp32 on CPU. `truncation` "error" refuses over-long inputs per row.
        """
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        if kind != "auto" and kind not in ADAPTERS:
            raise ValueError(f"kind must be auto or one of {', '.join(ADAPTERS)}, got {kind!r}")
        options = LoadOptions(
            revision=revision,
            dtype=dtype,  # type: ignore[arg-type]
            device=device,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
            token=token,
            attn_implementation=attn_implementation,
        )
        config = load_config(name, options)
        tokenizer = load_tokenizer(name, options)
        if kind == "auto":
            try:
                detection = detect_kind(config, tokenizer)
            except ValueError as error:
                raise ModelLoadError(str(error)) from None
        else:
            detection = Detection(kind, f"chosen with --kind {kind}")
        limit = max_length or default_max_length(config, tokenizer)
        adapter = _build_adapter(
            detection.kind, name, options, tokenizer,
            max_length=limit, truncation=truncation, chat_template=chat_template,
            label=label, alpha=alpha, token_type_ids=token_type_ids,
        )
        return cls(
            adapter,
            name=name,
            detection=detection,
            engine_options=EngineOptions(batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch),
        )

    # ----------------------------------------------------------------- scoring

    def score(self, inputs: Sequence[Conversation | dict | tuple[str, str]]) -> list[float]:
        """Score conversations, (instruction, response) tuples or rows holding one of the two.

        Raises RowError naming the first bad input; use `score_rows` to get per-row errors instead.
        """
        conversations = [self._as_conversation(i, value) for i, value in enumerate(inputs)]
        encoded = []
        for i, conversation in enumerate(conversations):
            try:
                encoded.append(self.adapter.encode(conversation))
            except RowError as error:
                raise RowError(f"input {i}: {error.reason}") from None
        return [out["score"] for out in engine.run(self.adapter, encoded, self.engine_options)]

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
                shape = _shape_of(chunk, columns)
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
        prepared = _Prepared(values=[None] * len(found.conversations), errors=list(found.item_errors))
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
            prepared[r].values[k] = result["score"]
        return [
            failed(row, shape, p.error, columns) if p.error else fold(row, shape, p.values, p.errors, columns)
            for row, p in zip(chunk, prepared)
        ]

    # -------------------------------------------------------------- reporting

    def describe(self) -> dict[str, str]:
        """What was detected and how scores are computed (used by `rewardmill inspect`)."""
        model = self.adapter.model
        parameter = next(model.parameters())
        return {
            "model": self.name,
            "detected": self.detection.reason,
            **self.adapter.describe(),
            "dtype": str(parameter.dtype).replace("torch.", ""),
            "device": str(parameter.device),
            "batching": f"length-sorted, up to {self.engine_options.batch_size} rows and "
            f"{self.engine_options.max_tokens_per_batch} padded tokens per batch",
        }


def _shape_of(chunk: list, columns: Columns) -> Shape:
    """The shape of the first readable row; the output columns must not exist yet."""
    for index, row in enumerate(chunk):
        if isinstance(row, dict) and not isinstance(row, UnreadableRow):
            try:
                shape = detect_shape(row.keys(), columns)
            except RowError as error:
                raise RowError(f"row {index}: {error.reason}") from None
            _check_output_free(row, shape, columns)
            return shape
    raise RowError(f"none of the first {len(chunk)} rows is a readable object")


def _check_output_free(row: dict, shape: Shape, columns: Columns) -> None:
    for name in (columns.output_for(shape), columns.error):
        if name in row:
            raise RowError(
                f"the input already has a '{name}' column; choose other output names "
                "(--score-column/--scores-column/--ratings-column/--error-column) so nothing is overwritten"
            )


def _build_adapter(kind: str, name: str, options: LoadOptions, tokenizer, **settings: Any) -> Adapter:
    from transformers import AutoModel, AutoModelForSequenceClassification

    if kind == "classifier":
        model = load_model(AutoModelForSequenceClassification, name, options)
        return ADAPTERS[kind](
            model, tokenizer, max_length=settings["max_length"], truncation=settings["truncation"],
            chat_template=settings["chat_template"], label=settings["label"],
        )
    if kind == "pair":
        model = load_model(AutoModelForSequenceClassification, name, options)
        from .adapters.classifier import select_label

        return ADAPTERS[kind](
            model, tokenizer, max_length=settings["max_length"], truncation=settings["truncation"],
            alpha=settings["alpha"], token_type_ids=settings["token_type_ids"],
            label=select_label(model.config, settings["label"]),
        )
    model = load_model(AutoModel, name, options)
    return ADAPTERS[kind](model, tokenizer, max_length=settings["max_length"], truncation=settings["truncation"])


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count (None leaves torch's default)."""
    if threads:
        torch.set_num_threads(threads)
