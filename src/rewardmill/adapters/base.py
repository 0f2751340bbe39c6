"""The one interface every model family implements.

An adapter owns a loaded model and its tokenizer. It turns a conversation into token ids (`encode`) and a
padded batch into named outputs, one value per row (`forward`). It declares how the engine must pad
(`padding_side`, `pad_token_id`). The engine never looks inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from ..rows import Conversation, RowError

Truncation = Literal["error", "left", "right"]


@dataclass
class AdapterSettings:
    """Every scoring option an adapter may use; each family reads the ones it needs."""

    max_length: int
    truncation: Truncation = "error"
    chat_template: str | None = None
    bos: str = "template"
    padding_side: Literal["left", "right"] | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    label: int | str | None = None
    all_labels: bool = False
    probabilities: bool = False
    alpha: float | None = None
    token_type_ids: bool | None = None
    objectives: bool = False
    gating: bool = False
    objective_names: list[str] | None = None
    reward_token_id: int | None = None


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

    def __init__(self, model: torch.nn.Module, tokenizer, settings: AdapterSettings):
        """Each family reads the settings it uses; the rest are ignored."""
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = settings.max_length
        self.truncation = settings.truncation
        self.model_kwargs = dict(settings.model_kwargs)
        # "score" comes first; families with several outputs (objectives, labels) add their names.
        self.output_names: tuple[str, ...] = ("score",)

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
        config = getattr(self.model, "config", None)
        info = {
            "kind": self.kind,
            "architecture": ", ".join(getattr(config, "architectures", None) or [type(self.model).__name__]),
            "model class": type(self.model).__name__,
            "padding side (rewardmill)": self.padding_side,
            "max length": f"{self.max_length} tokens, truncation: {self.truncation}",
        }
        if self.model_kwargs:
            info["forward kwargs"] = ", ".join(f"{k}={v!r}" for k, v in self.model_kwargs.items())
        if len(self.output_names) > 1:
            info["outputs"] = ", ".join(self.output_names)
        return info

    def fit(self, ids: list[int], *, keep_prefix: int = 0, keep_suffix: int = 0) -> list[int]:
        """Apply the truncation policy; `keep_prefix`/`keep_suffix` ids (BOS, a reward token) always survive."""
        if len(ids) <= self.max_length:
            return ids
        if self.truncation == "error":
            raise RowError(
                f"{len(ids)} tokens exceed the maximum length {self.max_length} "
                "(raise --max-length or choose --truncation left|right)"
            )
        head, tail = ids[:keep_prefix], ids[len(ids) - keep_suffix :]
        body = ids[keep_prefix : len(ids) - keep_suffix]
        room = self.max_length - len(head) - len(tail)
        if room <= 0:
            raise RowError(f"--max-length {self.max_length} leaves no room for the conversation")
        body = body[:room] if self.truncation == "right" else body[len(body) - room :]
        return head + body + tail
