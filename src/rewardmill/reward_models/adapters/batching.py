"""Encoded items into the `Batch` an adapter's forward reads: padded rows, or packed side by side in one row.

Adapters build batches too (a probe row at load), so this lives on the adapters' side: engines import it, never
the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence

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
