"""Family-agnostic batching: sort by length, batch under a token budget, run, restore input order; rows that
share a prefix run it once (prefix sharing, where the adapter declares it exact).

The engine sees only token ids and the adapter's padding needs. It exposes one batch step
(`Engine.step`: collate, forward, read) apart from the loop over a list (`Engine.run`: `batch_indices`, then step
per batch), so that a server's queue-based batcher or a Ray actor can form its own batches and drive the same step.
Sorting by length keeps padding small; the token budget (rows x longest row) bounds memory and keeps each
forward pass in the shape range where the hardware is efficient. Results come back in input order.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from ...errors import OptionsError
from ..adapters import unpadded
from ..adapters.base import Adapter, Batch, Encoded
from ..adapters.batching import Group, collate, collate_grouped, collate_packed, flex_block_mask, group_mask
from ..options import EngineOptions
from .budget import TokenBudget
from .prefix_groups import default_min_shared, find_groups
from .protocol import Capabilities, Result, StartableEngine
from .running import in_order, read, settle_batches

if TYPE_CHECKING:
    from ..options import CpuOptions, LoadOptions


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


# Attention implementations that run packed rows at their own length: flash attention's variable-length kernels,
# and flex attention's block masks, which skip the blocks between rows.
PACKING_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


def packs_by_default(adapter: Adapter) -> bool:
    """Whether the model's attention runs packed rows at their own length, so that packing saves the padding's
    work rather than adding the packed square's (as SDPA and eager attention would, masking it)."""
    config = getattr(adapter.model, "config", None)
    return adapter.can_pack and getattr(config, "_attn_implementation", None) in PACKING_ATTENTION


def unpadding_choice(adapter: Adapter, packing: bool | None) -> tuple[bool, str | None]:
    """Whether the engine runs `adapter`'s SDPA model unpadded (`adapters.unpadded`), and why not when it does not.
    `packing` None: on CPU, where it measured faster (docs/benchmarks.md); True: wherever the model allows it."""
    if packing is False or packs_by_default(adapter):
        return False, None
    why = unpadded.refusal(adapter)
    if why is not None:
        return False, why
    if packing is None and adapter.device.type != "cpu":
        return False, "measured on CPU only: --packing turns it on"
    unpadded.switch(adapter.model, adapter.reads_last_tokens_only)
    why = unpadded.check(adapter)
    if why is not None:
        unpadded.switch_back(adapter.model)
    return why is None, why


class Engine(StartableEngine):
    """Batches encoded items through one adapter in torch. `step` runs one batch; `run` plans and steps a list.

    A batch that runs out of memory lowers this engine's token budget (its own state: `options` never changes
    anyone's options object) until `restore_budget` gives it back."""

    capabilities = Capabilities(runner="the transformers engine", packs=True, prefix_sharing=True)

    def __init__(self, adapter: Adapter, options: EngineOptions = EngineOptions()):
        self.adapter = adapter
        if options.packing and not adapter.can_pack:
            raise OptionsError(f"packing needs a model whose forward takes position_ids and no extra arguments; "
                               f"this {adapter.kind} model's does not (leave packing off)")
        self.sharing_refusal = adapter.prefix_sharing_refusal()
        if options.prefix_sharing and self.sharing_refusal:
            raise OptionsError(f"--prefix-sharing: this model cannot share prefixes exactly: {self.sharing_refusal}")
        self.unpadded, self.unpadding_refusal = unpadding_choice(adapter, options.packing)
        self.configured = options.for_device(adapter.device, self.unpadded)
        self.packing = self.unpadded or (packs_by_default(adapter) if options.packing is None else options.packing)
        self.prefix_sharing = options.prefix_sharing is not False and self.sharing_refusal is None
        if self.configured.min_shared_tokens is None:
            self.configured = replace(self.configured, min_shared_tokens=default_min_shared(self.unpadded))
        self.budget = TokenBudget(self.configured.max_tokens_per_batch)
        self._warned = False

    @classmethod
    def start(cls, adapter: Adapter, options: EngineOptions, *, name: str, load: LoadOptions) -> Engine:
        return cls(adapter, options)

    @classmethod
    def check_options(cls, load: LoadOptions, model_kwargs: Mapping[str, Any], cpu: CpuOptions,
                      options: EngineOptions) -> None:
        """Every loading option applies to this engine."""

    @property
    def options(self) -> EngineOptions:
        """The configured options, with the token budget as it is now."""
        if self.budget.current == self.configured.max_tokens_per_batch:
            return self.configured
        return replace(self.configured, max_tokens_per_batch=self.budget.current)

    def batch_indices(self, items: Sequence[Encoded]) -> list[list[int]]:
        """Batches of item indices; with prefix sharing, the members of a group are adjacent in one batch, and the
        budget counts the group's computed tokens (its prefix once)."""
        if not self.prefix_sharing:
            lengths = [len(item) for item in items]
            return plan_packed(lengths, self.options) if self.packing else plan_batches(lengths, self.options)
        groups = self.groups(items)
        item_lengths = [len(item) for item in items]
        lengths = [group.computed_length(item_lengths) for group in groups]
        planned = plan_packed(lengths, self.options) if self.packing else plan_batches(lengths, self.options)
        return [[member for g in batch for member in groups[g].members] for batch in planned]

    def groups(self, items: Sequence[Encoded]) -> list[Group]:
        """The rows of `items` that share a prefix worth running once (`prefix_groups.find_groups`); rows longer
        than the model lets share (a sliding window) stay alone."""
        limit = self.adapter.shareable_length
        shareable = [i for i, item in enumerate(items) if limit is None or len(item) <= limit]
        groups = find_groups([items[i].input_ids for i in shareable], self.configured.min_shared_tokens,
                             self.budget.current)
        found = [Group(g.shared, tuple(shareable[m] for m in g.members)) for g in groups]
        alone = sorted(set(range(len(items))) - set(shareable))
        return found + [Group(0, (i,)) for i in alone]

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
        in a run's manifest, so that `--resume` batches as the interrupted run did. Prefix sharing is recorded
        only when on, so a run started before it existed (which ran without it) resumes unchanged."""
        options = self.options
        return {"engine": options.engine, "device": str(self.adapter.device), "batch_size": options.batch_size,
                "max_tokens_per_batch": options.max_tokens_per_batch, "min_fill": options.min_fill,
                "packing": self.packing, **({"prefix_sharing": True} if self.prefix_sharing else {})}

    def describe(self) -> dict[str, str]:
        options = self.options
        if self.unpadded:
            pruned = unpadded.last_layer_reads_only(self.adapter.model)
            last = ", the last layer's MLP on the tokens read only" if pruned else ""
            batching = (f"unpadded: the linear layers run on the batch's real tokens only{last}, the attention "
                        f"(SDPA) row by row (a shared prefix and its continuations piece by piece); up to "
                        f"{options.batch_size} rows and {options.max_tokens_per_batch} tokens per batch")
        elif self.packing:
            batching = (f"packed without padding (rows side by side, positions restarting at each), up to "
                        f"{options.batch_size} rows and {options.max_tokens_per_batch} tokens per batch")
        else:
            batching = (f"length-sorted, up to {options.batch_size} rows and {options.max_tokens_per_batch} padded "
                        f"tokens per batch, rows at least {options.min_fill:.0%} as long as the batch's longest")
        return {
            "engine": "transformers: the model's own forward in torch",
            "device": str(self.adapter.device),
            "batching": batching,
            "prefix sharing": self.describe_sharing(),
            **({"unpadded": f"off: {self.unpadding_refusal}"} if self.unpadding_refusal else {}),
        }

    def describe_sharing(self) -> str:
        if self.prefix_sharing:
            limit = self.adapter.shareable_length
            within = f"; rows up to {limit} tokens (the sliding window)" if limit is not None else ""
            least = self.configured.min_shared_tokens
            shared = "any leading tokens" if least == 1 else f"at least {least} leading tokens"
            return (f"on: rows sharing {shared} run them once, "
                    f"each continuation seeing the prefix and itself only, with its own positions{within}")
        if self.sharing_refusal:
            return f"off: {self.sharing_refusal}"
        return "off (--no-prefix-sharing)"

    def step(self, items: Sequence[Encoded]) -> list[dict[str, float]]:
        """Score one batch as given (no reordering): collate, forward, read; one result per item."""
        adapter = self.adapter
        with torch.inference_mode():
            shared = self.step_grouped(items) if self.prefix_sharing else None
            if shared is not None:
                return shared
            if self.unpadded:
                return self.forward_unpadded(collate(items, adapter.pad_token_id, "right", adapter.device))
            if self.packing:
                batch = collate_packed(items, adapter.device)
            else:
                batch = collate(items, adapter.pad_token_id, adapter.padding_side, adapter.device)
            return read(adapter.forward(batch))

    def step_grouped(self, items: Sequence[Encoded]) -> list[dict[str, float]] | None:
        """`step` for a batch whose rows share prefixes: its groups, each one row under a block mask; None when no
        two rows share enough. The rows are distinct (`settle_batches` runs identical rows once)."""
        groups = self.groups(items)
        if all(len(group.members) == 1 for group in groups):
            return None
        limit = self.adapter.shareable_length
        if limit is not None and any(len(item) > limit for item in items):
            # A row longer than the sliding window needs the model's own sliding mask, which the grouped rows'
            # block mask would replace: such rows run apart.
            results: list[dict[str, float]] = [{}] * len(items)
            for beyond in (False, True):
                part = [i for i, item in enumerate(items) if (len(item) > limit) is beyond]
                for i, result in zip(part, self.step([items[i] for i in part])):
                    results[i] = result
            return results
        adapter = self.adapter
        side = "right" if self.unpadded else adapter.padding_side
        batch = collate_grouped(items, groups, adapter.pad_token_id, side, adapter.device, self.block_mask)
        return self.forward_unpadded(batch) if self.unpadded else read(adapter.forward(batch))

    def forward_unpadded(self, batch: Batch) -> list[dict[str, float]]:
        """Run a padded or grouped batch on its real tokens only, the attention in its rows."""
        batch = unpadded.unpad(batch)
        with unpadded.layout(batch.layout):
            return read(self.adapter.forward(batch))

    def block_mask(self, segments: torch.Tensor):
        """A grouped batch's block mask in the form the model's attention takes: boolean for SDPA, additive for
        eager attention, a BlockMask for flex attention (built from the groups, never as a dense mask, so the
        attention skips the blocks nobody sees); none unpadded, where the grouped rows' attention runs piece by piece
        (`unpadded.Piece`)."""
        if self.unpadded:
            return None
        attention = getattr(self.adapter.model.config, "_attn_implementation", None) or "eager"
        if attention == "flex_attention":
            return flex_block_mask(segments)
        visible = group_mask(segments)
        if attention == "eager":
            dtype = self.adapter.model.dtype
            return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(
                ~visible, torch.finfo(dtype).min)
        return visible

    def run(self, items: Sequence[Encoded], on_batch: Callable[[list[int]], None] | None = None) -> list[Result]:
        """Score encoded items; returns one {output name: value} dict per item, in input order, or a `Failure`
        for an item that could not be scored even alone. A batch that raises is split in half and each half
        retried, down to single items, so one bad row never takes its neighbours down; a batch that runs out of
        memory also lowers the token budget for the rest of the run (said once, as a warning)."""
        return in_order(len(items), self.run_batches(items), on_batch)

    def run_batches(self, items: Sequence[Encoded]) -> Iterator[dict[int, Result]]:
        """Like `run`, one planned batch at a time: yields {index in `items`: result} as each batch is done, so
        a server can answer the requests of a batch before the next one runs."""
        yield from settle_batches(self.batch_indices, self.step, items, self._lower_budget)

    def restore_budget(self) -> bool:
        return self.budget.restore()

    def _lower_budget(self, failed_tokens: int) -> None:
        if self.budget.lower(failed_tokens) and not self._warned:
            warnings.warn(f"a batch ran out of memory: it was split and retried, and batches are now at most "
                          f"{self.budget.current} padded tokens for the rest of the run", RuntimeWarning,
                          stacklevel=3)
            self._warned = True
