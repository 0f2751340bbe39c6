"""Family-agnostic batching: sort by length, batch under a token budget, run, restore input order.

The engine sees only token ids and the adapter's padding needs. It exposes one batch step
(`Engine.step`: collate, forward, read) apart from the loop over a list (`Engine.run`: plan, then step per
batch), so that a server's queue-based batcher or a Ray actor can form its own batches and drive the same step.
Sorting by length keeps padding small; the token budget (rows x longest row) bounds memory and keeps each
forward pass in the shape range where the hardware is efficient. Results come back in input order.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from ...errors import OptionsError, RewardmillError
from ...scorer import Failure
from ..adapters.base import Adapter, Batch, Encoded
from ..options import EngineOptions


def plan_batches(lengths: Sequence[int], options: EngineOptions) -> list[list[int]]:
    """Group item indices into batches: longest first, each within batch_size, the token budget and min_fill.

    A single item longer than the budget still gets a batch of its own.
    """
    if options.batch_size is None or options.max_tokens_per_batch is None:
        raise OptionsError("plan_batches needs resolved options: call options.for_device(device) first")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted longest first, so the batch's padded width is the length of its first item.
        width = lengths[current[0]] if current else lengths[i]
        full = len(current) >= options.batch_size or (len(current) + 1) * width > options.max_tokens_per_batch
        if current and (full or lengths[i] < options.min_fill * width):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def plan_packed(lengths: Sequence[int], options: EngineOptions) -> list[list[int]]:
    """Group item indices into packed batches: longest first, each within batch_size rows and the token budget
    (real tokens). A single item longer than the budget still gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        if current and (len(current) >= options.batch_size or tokens + lengths[i] > options.max_tokens_per_batch):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    if current:
        batches.append(current)
    return batches


def collate_packed(items: Sequence[Encoded], device: torch.device) -> Batch:
    """Every item side by side in one row, positions restarting at 0 for each (see `Batch`)."""
    lengths = torch.tensor([len(item) for item in items], dtype=torch.long)
    ends = lengths.cumsum(0)
    input_ids = torch.tensor([token for item in items for token in item.input_ids], dtype=torch.long)[None]
    starts = torch.repeat_interleave(ends - lengths, lengths)
    position_ids = (torch.arange(int(ends[-1])) - starts)[None]
    return Batch(input_ids=input_ids.to(device), attention_mask=None, position_ids=position_ids.to(device),
                 last_index=(ends - 1).to(device), token_type_ids=None, items=list(items), packed=True)


# Attention implementations that run packed rows at their own length: flash attention's variable-length kernels,
# and flex attention's block masks, which skip the blocks between rows.
PACKING_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


def packs_by_default(adapter: Adapter) -> bool:
    """Whether the model's attention runs packed rows at their own length, so that packing saves the padding's
    work rather than adding the packed square's (as SDPA and eager attention would, masking it)."""
    config = getattr(adapter.model, "config", None)
    return adapter.can_pack and getattr(config, "_attn_implementation", None) in PACKING_ATTENTION


def collate(items: Sequence[Encoded], pad_token_id: int, padding_side: str, device: torch.device) -> Batch:
    """Pad items to the longest one; positions count real tokens only, so padding never shifts them."""
    width = max(len(item) for item in items)
    n = len(items)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    with_types = items[0].token_type_ids is not None
    token_type_ids = torch.zeros((n, width), dtype=torch.long) if with_types else None
    for row, item in enumerate(items):
        length = len(item)
        span = slice(width - length, width) if padding_side == "left" else slice(0, length)
        input_ids[row, span] = torch.tensor(item.input_ids, dtype=torch.long)
        attention_mask[row, span] = 1
        if token_type_ids is not None:
            token_type_ids[row, span] = torch.tensor(item.token_type_ids, dtype=torch.long)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    if padding_side == "left":
        last_index = torch.full((n,), width - 1, dtype=torch.long)
    else:
        last_index = torch.tensor([len(item) - 1 for item in items], dtype=torch.long)
    return Batch(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        last_index=last_index.to(device),
        token_type_ids=None if token_type_ids is None else token_type_ids.to(device),
        items=list(items),
    )


def read(outputs: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    """Per-row {output name: float} from the adapter's {output name: tensor [rows]} (one host copy each)."""
    columns = {name: values.detach().float().cpu().tolist() for name, values in outputs.items()}
    rows = len(next(iter(columns.values()))) if columns else 0
    return [{name: values[row] for name, values in columns.items()} for row in range(rows)]


class EngineFailure(RewardmillError, RuntimeError):
    """The engine itself broke (not one batch's rows): the run stops rather than failing every row."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, a CPU allocation failure (MemoryError, or torch's RuntimeError saying so)."""
    if isinstance(error, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "failed to allocate" in text
                                                or "can't allocate memory" in text)


class Engine:
    """Batches encoded items through one adapter. `step` runs one batch; `run` plans and steps a whole list."""

    def __init__(self, adapter: Adapter, options: EngineOptions = EngineOptions()):
        self.adapter = adapter
        self.options = options.for_device(adapter.device)
        if options.packing and not adapter.can_pack:
            raise OptionsError(f"packing needs a model whose forward takes position_ids and no extra arguments; "
                               f"this {adapter.kind} model's does not (leave packing off)")
        self.packing = packs_by_default(adapter) if options.packing is None else options.packing
        self._warned = False

    def plan(self, items: Sequence[Encoded]) -> list[list[int]]:
        lengths = [len(item) for item in items]
        return plan_packed(lengths, self.options) if self.packing else plan_batches(lengths, self.options)

    @property
    def runs_on_gpu(self) -> bool:
        return self.adapter.device.type == "cuda"

    @property
    def identity(self) -> dict[str, Any]:
        """What a score depends on in this engine besides the model (nothing more for the default engine)."""
        return {}

    @property
    def choices(self) -> dict[str, Any]:
        """The batch shapes this engine settled on (defaults filled in for the device, packing resolved): kept
        in a run's manifest, so that `--resume` batches as the interrupted run did."""
        options = self.options
        return {"engine": options.engine, "device": str(self.adapter.device), "batch_size": options.batch_size,
                "max_tokens_per_batch": options.max_tokens_per_batch, "min_fill": options.min_fill,
                "packing": self.packing}

    def describe(self) -> dict[str, str]:
        options = self.options
        if self.packing:
            batching = (f"packed without padding (rows side by side, positions restarting at each), up to "
                        f"{options.batch_size} rows and {options.max_tokens_per_batch} tokens per batch")
        else:
            batching = (f"length-sorted, up to {options.batch_size} rows and {options.max_tokens_per_batch} padded "
                        f"tokens per batch, rows at least {options.min_fill:.0%} as long as the batch's longest")
        return {
            "engine": "transformers: the model's own forward in torch",
            "device": str(self.adapter.device),
            "batching": batching,
        }

    def step(self, items: Sequence[Encoded]) -> list[dict[str, float]]:
        """Score one batch as given (no reordering): collate, forward, read; one result per item."""
        adapter = self.adapter
        with torch.inference_mode():
            if self.packing:
                batch = collate_packed(items, adapter.device)
            else:
                batch = collate(items, adapter.pad_token_id, adapter.padding_side, adapter.device)
            return read(adapter.forward(batch))

    def run(
        self, items: Sequence[Encoded], on_batch: Callable[[list[int]], None] | None = None
    ) -> list[dict[str, float] | Failure]:
        """Score encoded items; returns one {output name: value} dict per item, in input order, or a `Failure`
        for an item that could not be scored even alone. A batch that raises is split in half and each half
        retried, down to single items, so one bad row never takes its neighbours down; a batch that runs out of
        memory also lowers the token budget for the rest of the run (said once, as a warning)."""
        results: list[dict[str, float] | Failure | None] = [None] * len(items)
        for settled in self.run_batches(items):
            for index, result in settled.items():
                results[index] = result
            if on_batch is not None:
                on_batch(list(settled))
        return results  # type: ignore[return-value]

    def run_batches(self, items: Sequence[Encoded]) -> Iterator[dict[int, dict[str, float] | Failure]]:
        """Like `run`, one planned batch at a time: yields {index in `items`: result} as each batch is done, so
        a server can answer the requests of a batch before the next one runs."""
        for indices in self.plan(items):
            yield self._settle(items, indices)

    def _settle(self, items: Sequence[Encoded], indices: list[int]) -> dict[int, dict[str, float] | Failure]:
        try:
            return dict(zip(indices, self.step([items[i] for i in indices])))
        except EngineFailure:
            raise
        except Exception as error:  # the model's own code may raise anything; a bug shows as every row failing
            out_of_memory = is_out_of_memory(error)
            if len(indices) == 1:
                what = "out of memory even alone" if out_of_memory else f"{type(error).__name__}: {error}"
                return {indices[0]: Failure(f"scoring failed ({len(items[indices[0]])} tokens): {what}")}
            if out_of_memory:
                self._lower_budget(len(indices) * max(len(items[i]) for i in indices))
        half = len(indices) // 2
        return {**self._settle(items, indices[:half]), **self._settle(items, indices[half:])}

    def _lower_budget(self, failed_tokens: int) -> None:
        budget = max(1, min(self.options.max_tokens_per_batch, failed_tokens) // 2)
        if budget < self.options.max_tokens_per_batch:
            self.options = replace(self.options, max_tokens_per_batch=budget)
            if not self._warned:
                warnings.warn(f"a batch ran out of memory: it was split and retried, and batches are now at most "
                              f"{budget} padded tokens for the rest of the run", RuntimeWarning, stacklevel=3)
                self._warned = True
