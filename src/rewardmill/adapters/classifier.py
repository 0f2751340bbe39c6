"""Decoder LLM with a classification head (Skywork-Reward, Llama/Qwen/Gemma reward models).

Input: the conversation rendered with the model's chat template, tokenized without adding special
tokens, so BOS comes from the template only (a doubled leading BOS is collapsed to one). Output: the
head applied to the hidden state of the last real token, found from the attention mask rather than from
pad-token ids, so it is right for any padding side and for pad == eos.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..loading import ModelLoadError
from ..rows import Conversation, RowError
from .base import Adapter, Batch, Encoded, Truncation

_PROBE: Conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def read_template(value: str | None) -> str | None:
    """A chat template given as a Jinja string or as a path to a file holding one."""
    if value is None:
        return None
    path = Path(value)
    if len(value) < 4096 and "{" not in value and path.is_file():
        return path.read_text(encoding="utf-8")
    return value


def select_label(config, label: int | str | None) -> int:
    """Index of the logit to read: the only one, or the one named or numbered by `label`."""
    num_labels = int(getattr(config, "num_labels", 1))
    names = {str(v): int(k) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if label is None:
        if num_labels == 1:
            return 0
        raise ModelLoadError(
            f"the model has {num_labels} output labels ({', '.join(names) or 'unnamed'}); "
            "choose the one to use as score with --label NAME|INDEX"
        )
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in names:
            raise ModelLoadError(f"unknown label {label!r}; the model's labels are {', '.join(names)}")
        return names[label]
    index = int(label)
    if not 0 <= index < num_labels:
        raise ModelLoadError(f"label index {index} is out of range for a model with {num_labels} labels")
    return index


class ClassifierAdapter(Adapter):
    kind = "classifier"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        max_length: int,
        truncation: Truncation,
        chat_template: str | None = None,
        label: int | str | None = None,
        padding_side: str = "right",
    ):
        super().__init__(model, tokenizer, max_length=max_length, truncation=truncation)
        self.chat_template = read_template(chat_template)
        if self.chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ModelLoadError(
                "the tokenizer has no chat template, so rewardmill cannot render conversations the way the "
                "model was trained; pass one with --chat-template FILE_OR_STRING (API: chat_template=...)"
            )
        self.padding_side = padding_side  # type: ignore[assignment]
        self.label_index = select_label(model.config, label)
        self.bos_id = tokenizer.bos_token_id
        self._pad_id, self.pad_note = _pad_token(tokenizer)
        head = getattr(model, "score", None)
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        self.head = head if isinstance(head, torch.nn.Linear) and isinstance(base, torch.nn.Module) else None
        self.base = base if self.head is not None else None
        if self.head is None:
            # Fall back on the model's own pooling, which finds the last token from pad ids.
            model.config.pad_token_id = self._pad_id

    @property
    def pad_token_id(self) -> int:
        return self._pad_id

    def render(self, conversation: Conversation) -> str:
        return self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template, tokenize=False)

    def encode(self, conversation: Conversation) -> Encoded:
        try:
            text = self.render(conversation)
        except Exception as error:  # Jinja raise_exception(), e.g. "roles must alternate"
            raise RowError(f"the chat template rejected this conversation: {error}") from None
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        starts_with_bos = self.bos_id is not None and bool(ids) and ids[0] == self.bos_id
        if starts_with_bos and len(ids) > 1 and ids[1] == self.bos_id:
            ids = ids[1:]
        return Encoded(self.fit(ids, keep_prefix=1 if starts_with_bos else 0))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.head is not None:
            hidden = self.base(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            ).last_hidden_state
            last = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.last_index]
            logits = self.head(last)
        else:
            logits = self.model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            ).logits
        return {"score": logits[:, self.label_index]}

    def bos_report(self) -> str:
        tok = self.tokenizer
        if self.bos_id is None:
            return "the tokenizer has no BOS token"
        template_bos = self.tokenizer(self.render(_PROBE), add_special_tokens=False)["input_ids"][:1] == [self.bos_id]
        tokenizer_bos = tok("x")["input_ids"][:1] == [self.bos_id]
        if template_bos and tokenizer_bos:
            return f"template writes BOS {tok.bos_token!r} and the tokenizer would add another; rewardmill keeps one"
        if template_bos:
            return f"template writes BOS {tok.bos_token!r}; rewardmill adds none"
        return "template writes no BOS; rewardmill adds none (as apply_chat_template does)"

    def describe(self) -> dict[str, str]:
        config = self.model.config
        return {
            **super().describe(),
            "architecture": ", ".join(getattr(config, "architectures", None) or [type(self.model).__name__]),
            "input": "conversation rendered with the chat template "
            + ("given by the user" if self.chat_template else "of the tokenizer"),
            "score": f"logit {self.label_index} of the head at the last real token"
            + ("" if self.head is not None else " (model's own pooling)"),
            "pad token": self.pad_note,
            "tokenizer padding side": str(getattr(self.tokenizer, "padding_side", "?")),
            "BOS": self.bos_report(),
            "max length": f"{self.max_length} tokens, truncation: {self.truncation}",
        }


def _pad_token(tokenizer) -> tuple[int, str]:
    """The pad id to use. Pads are masked and never read, so any id works when the tokenizer has none."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id, f"{tokenizer.pad_token!r} (id {tokenizer.pad_token_id})"
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id, f"none in the tokenizer; using EOS {tokenizer.eos_token!r} (masked, never scored)"
    return 0, "none in the tokenizer; using id 0 (masked, never scored)"
