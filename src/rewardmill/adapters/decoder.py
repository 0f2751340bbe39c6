"""Shared base of decoder reward models fed a chat-template rendering of the conversation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..rows import Conversation
from .base import Adapter, AdapterSettings, Encoded, Truncation
from .chat import ChatEncoder, pad_token


class DecoderAdapter(Adapter):
    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        max_length: int,
        truncation: Truncation,
        chat_template: str | None = None,
        suffix_ids: Sequence[int] = (),
        padding_side: str = "right",
        model_kwargs: dict[str, Any] | None = None,
        bos: str = "template",
    ):
        super().__init__(model, tokenizer, max_length=max_length, truncation=truncation, model_kwargs=model_kwargs)
        self.chat = ChatEncoder(tokenizer, chat_template, suffix_ids, bos)
        self.padding_side = padding_side  # type: ignore[assignment]
        self._pad_id, self.pad_note = pad_token(tokenizer)

    @staticmethod
    def common(settings: AdapterSettings) -> dict[str, Any]:
        """Constructor arguments every decoder family takes from the shared settings."""
        return dict(
            max_length=settings.max_length, truncation=settings.truncation, chat_template=settings.chat_template,
            padding_side=settings.padding_side or "right", model_kwargs=settings.model_kwargs, bos=settings.bos,
        )

    @classmethod
    def build(cls, model, tokenizer, settings: AdapterSettings) -> DecoderAdapter:
        return cls(model, tokenizer, **cls.common(settings))

    @property
    def pad_token_id(self) -> int:
        return self._pad_id

    def render(self, conversation: Conversation) -> str:
        return self.chat.render(conversation)

    def encode(self, conversation: Conversation) -> Encoded:
        ids, prefix, suffix = self.chat.encode(conversation)
        return Encoded(self.fit(ids, keep_prefix=prefix, keep_suffix=suffix))

    def describe(self) -> dict[str, str]:
        return {
            **super().describe(),
            **self.chat.describe(),
            "pad token": self.pad_note,
            "tokenizer padding side": str(getattr(self.tokenizer, "padding_side", "?")),
        }
