"""The one interface every model family implements.

An adapter owns a loaded model and its tokenizer. It turns a conversation into token ids (`encode`) and a
padded batch into named outputs, one value per row (`forward`). It declares how the engine must pad
(`padding_side`, `pad_token_id`). The engine never looks inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..rows import Conversation, RowError

Truncation = Literal["error", "left", "right"]


@dataclass
class Encoded:
    """Token ids of one item, unpadded. `token_type_ids`, when present, has the same length."""

    input_ids: list[int]
    token_type_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    """A padded batch, as the engine builds it. `last_index[i]` is the position of row i's last real token."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    last_index: torch.Tensor
    token_type_ids: torch.Tensor | None
    items: list[Encoded]


class Adapter(ABC):
    """Base class of model-family adapters."""

    kind: ClassVar[str]
    padding_side: Literal["left", "right"] = "right"
    output_names: tuple[str, ...] = ("score",)

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_length: int, truncation: Truncation):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    @abstractmethod
    def pad_token_id(self) -> int: ...

    @abstractmethod
    def encode(self, conversation: Conversation) -> Encoded:
        """Token ids for one conversation. Raises RowError when it cannot be encoded."""

    @abstractmethod
    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Run the model on a padded batch; return each output name -> tensor of shape [batch]."""

    def describe(self) -> dict[str, str]:
        """What `rewardmill inspect` prints about this adapter."""
        return {"kind": self.kind, "padding side (rewardmill)": self.padding_side}

    def fit(self, ids: list[int], *, keep_prefix: int = 0) -> list[int]:
        """Apply the truncation policy to a token list; `keep_prefix` tokens (e.g. BOS) survive left cuts."""
        if len(ids) <= self.max_length:
            return ids
        if self.truncation == "error":
            raise RowError(
                f"{len(ids)} tokens exceed the maximum length {self.max_length} "
                "(raise --max-length or choose --truncation left|right)"
            )
        if self.truncation == "right":
            return ids[: self.max_length]
        keep = ids[:keep_prefix]
        return keep + ids[len(ids) - (self.max_length - len(keep)) :]
