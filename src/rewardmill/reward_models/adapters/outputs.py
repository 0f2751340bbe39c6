"""Reading a score out of whatever a custom model's forward returns."""

from __future__ import annotations

from typing import Any

import torch

from .base import Batch

SCORE_FIELDS = ("score", "scores", "logits", "rewards", "reward", "values", "value")


def output_tensor(output: Any, fields: tuple[str, ...] = SCORE_FIELDS) -> torch.Tensor:
    """The first tensor among `fields` of a ModelOutput/dict, the first element of a tuple, or the tensor."""
    if isinstance(output, torch.Tensor):
        return output
    for name in fields:
        value = output.get(name) if isinstance(output, dict) else getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find a score tensor in the model output ({type(output).__name__}); tried {', '.join(fields)}")


def per_row(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """One value per row: [b], [b, 1], or per-token [b, L] / [b, L, 1] read at each row's last real token."""
    width = batch.input_ids.shape[1]
    if values.dim() == 3 and values.shape[-1] == 1:
        values = values.squeeze(-1)
    if values.dim() == 2 and values.shape[1] == width and width > 1:
        rows = torch.arange(values.shape[0]) if batch.row_of is None else batch.row_of  # grouped: item's row
        return values[rows.to(values.device), batch.last_index.to(values.device)]
    if values.dim() == 2 and values.shape[1] == 1:
        return values[:, 0]
    if values.dim() == 1:
        return values
    raise TypeError(f"the model returned scores of shape {tuple(values.shape)} for a batch of {tuple(batch.input_ids.shape)}")
