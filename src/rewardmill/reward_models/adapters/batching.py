"""Encoded items into the `Batch` an adapter's forward reads: padded rows, packed side by side in one row, or
grouped (rows that share a prefix run it once, each seeing the prefix and itself only).

Adapters build batches too (a probe row at load), so this lives on the adapters' side: engines import it, never
the reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .base import Batch, Encoded


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


def collate_packed(items: Sequence[Encoded], device: torch.device) -> Batch:
    """Every item side by side in one row, positions restarting at 0 for each (see `Batch`)."""
    lengths = torch.tensor([len(item) for item in items], dtype=torch.long)
    ends = lengths.cumsum(0)
    input_ids = torch.tensor([token for item in items for token in item.input_ids], dtype=torch.long)[None]
    starts = torch.repeat_interleave(ends - lengths, lengths)
    position_ids = (torch.arange(int(ends[-1])) - starts)[None]
    return Batch(input_ids=input_ids.to(device), attention_mask=None, position_ids=position_ids.to(device),
                 last_index=(ends - 1).to(device), token_type_ids=None, items=list(items), packed=True)


@dataclass(frozen=True)
class Group:
    """Items that run as one sequence: their first `shared` ids (the same in each) once, then each item's rest.
    `shared` is 0 for an item that shares nothing, and never its whole length (each keeps its own last token)."""

    shared: int
    members: tuple[int, ...]  # indices into the batch's items

    def computed_length(self, lengths: Sequence[int]) -> int:
        """The tokens the group's row computes (`lengths`: every item's): its prefix once, then each member's rest."""
        return self.shared + sum(lengths[m] - self.shared for m in self.members)


def _sees(q, k, query, key):
    """Whether the token at q (segment `query`) attends to the token at k (segment `key`): earlier or itself, in
    its own continuation or in the shared prefix (segment 0); a padding token (segment -1) sees itself only."""
    return ((k <= q) & (key >= 0) & ((key == 0) | (key == query))) | ((q == k) & (query < 0))


def group_mask(segments: torch.Tensor) -> torch.Tensor:
    """The boolean attention mask [rows, 1, width, width] of grouped rows (`_sees`). `segments` [rows, width]: 0 on
    a shared prefix, k on a group's k-th continuation, -1 on padding."""
    index = torch.arange(segments.shape[1], device=segments.device)
    return _sees(index[:, None], index[None, :], segments[:, :, None], segments[:, None, :])[:, None]


def flex_block_mask(segments: torch.Tensor):
    """`group_mask` as a flex attention BlockMask, built from the segments rather than from a dense mask, so
    that the attention skips the blocks that no token of the block sees (between siblings, on padding)."""
    from torch.nn.attention.flex_attention import create_block_mask

    rows, width = segments.shape
    return create_block_mask(lambda b, h, q, k: _sees(q, k, segments[b, q], segments[b, k]), rows, None, width,
                             width, device=segments.device)


def collate_grouped(items: Sequence[Encoded], groups: Sequence[Group], pad_token_id: int, padding_side: str,
                    device: torch.device, mask: Callable[[torch.Tensor], Any] = group_mask) -> Batch:
    """One row per group, padded: the shared prefix once, then each member's rest, under the block mask `mask`
    builds from the rows' segments (`group_mask`, or `flex_block_mask` for flex attention), and each member's
    positions as if it ran alone, so every member scores as it would alone."""
    item_lengths = [len(item) for item in items]
    lengths = [group.computed_length(item_lengths) for group in groups]
    width, rows = max(lengths), len(groups)
    input_ids = torch.full((rows, width), pad_token_id, dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.long)
    segments = torch.full((rows, width), -1, dtype=torch.long)
    last_index = torch.zeros(len(items), dtype=torch.long)
    row_of = torch.zeros(len(items), dtype=torch.long)
    for row, (group, length) in enumerate(zip(groups, lengths)):
        at = width - length if padding_side == "left" else 0
        shared = group.shared
        if shared:
            input_ids[row, at:at + shared] = torch.tensor(items[group.members[0]].input_ids[:shared])
            positions[row, at:at + shared] = torch.arange(shared)
            segments[row, at:at + shared] = 0
            at += shared
        for k, member in enumerate(group.members, start=1):
            rest = items[member].input_ids[shared:]
            input_ids[row, at:at + len(rest)] = torch.tensor(rest)
            positions[row, at:at + len(rest)] = torch.arange(shared, shared + len(rest))
            segments[row, at:at + len(rest)] = k
            at += len(rest)
            last_index[member], row_of[member] = at - 1, row
    segments = segments.to(device)
    return Batch(input_ids=input_ids.to(device), attention_mask=mask(segments),
                 position_ids=positions.to(device), last_index=last_index.to(device), token_type_ids=None,
                 items=list(items), row_of=row_of.to(device), segments=segments)
