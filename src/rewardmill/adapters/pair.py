"""Pair-input encoders (BERT/DeBERTa regression reward models) fed `tokenizer(prompt, response)`.

Multi-turn conversations are flattened into the prompt side: a lone user turn is used as it is; otherwise
every turn before the final assistant answer becomes "Role: content", joined by blank lines, e.g.
"System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: And you?". The final assistant turn is the
response side.
"""

from __future__ import annotations

import inspect

import torch

from ..loading import ModelLoadError
from ..rows import Conversation, RowError
from .base import Adapter, AdapterSettings, Batch, Encoded
from .classifier import select_label
from .outputs import output_tensor


def flatten(conversation: Conversation) -> tuple[str, str]:
    """(prompt, response) for a conversation ending with an assistant turn."""
    *context, last = conversation
    if len(context) == 1 and context[0]["role"] == "user":
        return context[0]["content"], last["content"]
    prompt = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in context)
    return prompt, last["content"]


class PairAdapter(Adapter):
    kind = "pair"

    def __init__(self, model: torch.nn.Module, tokenizer, settings: AdapterSettings):
        super().__init__(model, tokenizer, settings)
        parameters = inspect.signature(model.forward).parameters
        token_type_ids = settings.token_type_ids
        if token_type_ids is None:
            token_type_ids = (
                "token_type_ids" in getattr(tokenizer, "model_input_names", ())
                and getattr(model.config, "type_vocab_size", 2) > 1
                and "token_type_ids" in parameters
            )
        self.use_token_type_ids = bool(token_type_ids)
        self.alpha = settings.alpha
        self.alpha_in_forward = self.alpha is not None and "alpha" in parameters
        if "alpha" in self.model_kwargs and self.alpha is not None:
            raise ModelLoadError("give alpha once: either --alpha or --model-kwarg alpha=..., not both")
        # Only a classification head has labels; custom regression models (seed 001) return one value.
        with_labels = type(model).__name__.endswith("ForSequenceClassification")
        single = not with_labels or getattr(model.config, "num_labels", 1) == 1
        self.label_index = 0 if single else select_label(model.config, settings.label)
        if tokenizer.pad_token_id is None:
            raise ModelLoadError("the tokenizer of this pair-input model has no pad token")

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def _tokenize(self, prompt: str, response: str, **truncation) -> dict:
        return self.tokenizer(prompt, response, return_token_type_ids=self.use_token_type_ids, **truncation)

    def encode(self, conversation: Conversation) -> Encoded:
        prompt, response = flatten(conversation)
        enc = self._tokenize(prompt, response)
        if len(enc["input_ids"]) > self.max_length:
            if self.truncation == "error":
                self.fit(enc["input_ids"])  # raises the standard message
            side = "only_second" if self.truncation == "right" else "only_first"
            old_side = self.tokenizer.truncation_side
            self.tokenizer.truncation_side = self.truncation
            try:
                enc = self._tokenize(prompt, response, truncation=side, max_length=self.max_length)
            except Exception as error:
                raise RowError(f"cannot truncate to {self.max_length} tokens by cutting the "
                               f"{'response' if side == 'only_second' else 'prompt'}: {error}") from None
            finally:
                self.tokenizer.truncation_side = old_side
            if len(enc["input_ids"]) > self.max_length:
                raise RowError(f"cannot fit this pair into {self.max_length} tokens with --truncation {self.truncation}")
        types = enc.get("token_type_ids") if self.use_token_type_ids else None
        return Encoded(list(enc["input_ids"]), None if types is None else list(types))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if batch.token_type_ids is not None:
            kwargs["token_type_ids"] = batch.token_type_ids
        if self.alpha_in_forward:
            kwargs["alpha"] = self.alpha
        output = self.model(**kwargs, **self.model_kwargs)
        logits = output_tensor(output, ("logits", "score", "scores", "rewards", "reward"))
        logits = logits.reshape(logits.shape[0], -1)
        score = logits[:, self.label_index]
        if self.alpha is not None and not self.alpha_in_forward:
            score = score * self.alpha
        return {"score": score}

    def describe(self) -> dict[str, str]:
        alpha = "none"
        if self.alpha is not None:
            alpha = f"{self.alpha} ({'passed to forward(alpha=...)' if self.alpha_in_forward else 'multiplies the score'})"
        return {
            **super().describe(),
            "input": "tokenizer(prompt, response); earlier turns flattened into the prompt as 'Role: content'",
            "calls": f"{type(self.model).__name__}.forward(input_ids, attention_mask"
            + (", token_type_ids" if self.use_token_type_ids else "")
            + (", alpha" if self.alpha_in_forward else "") + ")",
            "token_type_ids": "passed" if self.use_token_type_ids else "not passed",
            "score": f"regression output {self.label_index}",
            "alpha": alpha,
            "pad token": f"{self.tokenizer.pad_token!r} (id {self.pad_token_id})",
        }
