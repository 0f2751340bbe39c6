"""Shared base of decoder reward models fed a chat-template rendering of the conversation."""

from __future__ import annotations

from collections.abc import Sequence
import torch

from ..rows import Conversation
from .base import Adapter, AdapterSettings, Encoded
from .chat import ChatEncoder, pad_token


class DecoderAdapter(Adapter):
    def __init__(self, model: torch.nn.Module, tokenizer, settings: AdapterSettings, suffix_ids: Sequence[int] = ()):
        super().__init__(model, tokenizer, settings)
        self.chat = ChatEncoder(tokenizer, settings.chat_template, suffix_ids, settings.bos)
        self.padding_side = settings.padding_side or "right"
        self._pad_id, self.pad_note = pad_token(tokenizer)

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
