"""Shared base of decoder reward models fed a chat-template rendering of the conversation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import RowError
from ...scorer import Conversation
from ..family_options import DecoderOptions, FamilyOptions
from ..options import TextOptions
from .base import Adapter, Batch, Encoded, forward_parameters
from .chat import ChatEncoder, pad_token
from .sharing import shareable_length


class DecoderAdapter(Adapter):
    Options = DecoderOptions

    def __init__(self, model: torch.nn.Module, tokenizer, text: TextOptions = TextOptions(),
                 options: FamilyOptions | None = None, suffix_ids: Sequence[int] = ()):
        super().__init__(model, tokenizer, text, options)
        options = self.options
        self.chat = ChatEncoder(tokenizer, options.chat_template, suffix_ids, options.bos or "template")
        self.padding_side = options.padding_side or "right"
        self._pad_id, self.pad_note = pad_token(tokenizer)
        # Positions must count real tokens only; a forward that takes no position_ids gets right padding by
        # default, where the model's own positions are already right.
        self.passes_positions = "position_ids" in forward_parameters(model)

    @property
    def pad_token_id(self) -> int:
        return self._pad_id

    @property
    def shareable_length(self) -> int | None:
        return shareable_length(self.model)

    def render(self, conversation: Conversation) -> str:
        return self.chat.render(conversation)

    def encode(self, conversation: Conversation) -> Encoded:
        ids, prefix, suffix = self.chat.encode(conversation)
        return Encoded(self.fit(ids, keep_prefix=prefix, keep_suffix=suffix))

    def encode_text(self, text: str, add_special_tokens: bool = False) -> Encoded:
        ids, prefix, suffix = self.chat.encode_rendered(text, add_special_tokens)
        if len(ids) == len(self.chat.suffix_ids):
            raise RowError("empty text: there is nothing to score")
        return Encoded(self.fit(ids, keep_prefix=prefix, keep_suffix=suffix))

    def call_model(self, batch: Batch):
        """The model's own forward on a padded batch, with position ids whenever it takes them."""
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.passes_positions:
            inputs["position_ids"] = batch.position_ids
        return self.model(**inputs, **self.model_kwargs)

    def describe(self) -> dict[str, str]:
        info = {
            **super().describe(),
            **self.chat.describe(),
            "pad token": self.pad_note,
            "tokenizer padding side": str(getattr(self.tokenizer, "padding_side", "?")),
        }
        if not self.passes_positions and self.padding_side == "left":
            info["positions"] = "the model's forward takes no position_ids: left-padded rows use the model's own positions"
        return info
