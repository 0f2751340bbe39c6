"""Pair-input encoders (BERT/DeBERTa regression reward models) fed `tokenizer(prompt, response)`.

Multi-turn conversations are flattened into the prompt side: a lone user turn is used as it is; otherwise
every turn before the final assistant answer becomes "Role: content", joined by blank lines, e.g.
"System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: And you?". The final assistant turn is the
response side. Over-long pairs are cut on token ids, never by changing the shared tokenizer's settings:
`right` drops the end of the response, `left` the start of the prompt (as `truncation="only_second"` and
`"only_first"` with a left truncation side would), so encoding is safe from several threads.
"""

from __future__ import annotations

import torch

from ...errors import OptionsError, RowError
from ...scorer import Conversation
from ..family_options import FamilyOptions, PairOptions
from ..loading import ModelLoadError
from ..options import TextOptions
from .base import Adapter, Batch, Encoded, forward_parameters
from .classifier import select_label
from .outputs import output_tensor


def flatten(conversation: Conversation) -> tuple[str, str]:
    """(prompt, response) for a conversation ending with an assistant turn."""
    *context, last = conversation
    if len(context) == 1 and context[0]["role"] == "user":
        return context[0]["content"], last["content"]
    prompt = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in context)
    return prompt, last["content"]


def segments(tokenizer, encoding, prompt: str) -> list[int | None]:
    """For each token of a pair encoding: 0 (prompt), 1 (response) or None (a special token)."""
    if getattr(encoding, "encodings", None):
        return list(encoding.sequence_ids())
    # Tokenizers without a Rust backend: the first tokens that are not special belong to the prompt.
    prompt_length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    found: list[int | None] = []
    seen = 0
    for special in encoding["special_tokens_mask"]:
        if special:
            found.append(None)
        else:
            found.append(0 if seen < prompt_length else 1)
            seen += 1
    return found


class PairAdapter(Adapter):
    kind = "pair"
    auto_classes = ("AutoModelForSequenceClassification", "AutoModel")
    Options = PairOptions

    @classmethod
    def detect(cls, evidence) -> str | None:
        if evidence.code is None:
            if not evidence.decoder and any(a.endswith("ForSequenceClassification") for a in evidence.architectures):
                return f"{evidence.arch}: encoder with a classification head -> tokenizer(prompt, response)"
            return None
        if evidence.encoder:
            return (f"custom code {evidence.class_name} ({evidence.auto_class}) on a '{evidence.model_type}' encoder "
                    "-> tokenizer(prompt, response)")
        if evidence.encoder_regression:
            return (f"custom code {evidence.class_name} ({evidence.auto_class}): {evidence.encoder_regression} "
                    "-> tokenizer(prompt, response)")
        return None

    def prefix_sharing_refusal(self) -> str | None:
        return ("a bidirectional encoder: every token attends to the whole (prompt, response) pair, so a shared "
                "prompt computes differently for each response")

    def __init__(self, model: torch.nn.Module, tokenizer, text: TextOptions = TextOptions(),
                 options: FamilyOptions | None = None):
        super().__init__(model, tokenizer, text, options)
        options = self.options
        parameters = forward_parameters(model)
        token_type_ids = options.token_type_ids
        if token_type_ids is None:
            token_type_ids = (
                "token_type_ids" in getattr(tokenizer, "model_input_names", ())
                and getattr(model.config, "type_vocab_size", 2) > 1
                and "token_type_ids" in parameters
            )
        self.use_token_type_ids = bool(token_type_ids)
        self.alpha = options.alpha
        self.alpha_in_forward = self.alpha is not None and "alpha" in parameters
        if "alpha" in self.model_kwargs and self.alpha is not None:
            raise OptionsError("give alpha once: either --alpha or --model-kwarg alpha=..., not both")
        # Only a classification head has labels; custom regression models (seed 001) return one value.
        with_labels = type(model).__name__.endswith("ForSequenceClassification")
        single = not with_labels or getattr(model.config, "num_labels", 1) == 1
        self.label_index = 0 if single else select_label(model.config, options.label)
        if tokenizer.pad_token_id is None:
            raise ModelLoadError("the tokenizer of this pair-input model has no pad token")

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def encode(self, conversation: Conversation) -> Encoded:
        prompt, response = flatten(conversation)
        enc = self.tokenizer(prompt, response, return_token_type_ids=self.use_token_type_ids,
                             return_special_tokens_mask=True)
        ids = list(enc["input_ids"])
        types = list(enc["token_type_ids"]) if self.use_token_type_ids and "token_type_ids" in enc else None
        excess = len(ids) - self.max_length
        if excess > 0:
            self.refuse_over_length(len(ids))
            keep = self._truncated_positions(segments(self.tokenizer, enc, prompt), excess)
            ids = [ids[i] for i in keep]
            types = None if types is None else [types[i] for i in keep]
        return Encoded(ids, types)

    def _truncated_positions(self, owners: list[int | None], excess: int) -> list[int]:
        """Positions kept after cutting `excess` tokens from the end of the response (right) or the start of
        the prompt (left)."""
        side = 1 if self.truncation == "right" else 0
        cut = [i for i, owner in enumerate(owners) if owner == side]
        if len(cut) <= excess:
            part = "response" if side == 1 else "prompt"
            raise RowError(f"cannot fit this pair into {self.max_length} tokens with --truncation {self.truncation}: "
                           f"the {part} has {len(cut)} tokens and {excess} would have to go")
        dropped = set(cut[len(cut) - excess:] if side == 1 else cut[:excess])
        return [i for i in range(len(owners)) if i not in dropped]

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
