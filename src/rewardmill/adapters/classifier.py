"""Decoder LLM with a classification head (Skywork-Reward, Llama/Qwen/Gemma reward models).

The head is applied to the hidden state of the last real token, found from the attention mask rather than
from pad-token ids, so it is right for any padding side and for pad == eos. Multi-label heads: `label`
picks the logit used as score; `all_labels` adds one output per label; `probabilities` turns logits into
softmax probabilities (sigmoid for a single label).
"""

from __future__ import annotations

import torch

from ..loading import ModelLoadError
from .base import AdapterSettings, Batch
from .decoder import DecoderAdapter


def label_names(config) -> list[str]:
    num_labels = int(getattr(config, "num_labels", 1))
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(num_labels)]


def select_label(config, label: int | str | None) -> int:
    """Index of the logit to read: the only one, or the one named or numbered by `label`."""
    names = label_names(config)
    if label is None:
        if len(names) == 1:
            return 0
        raise ModelLoadError(
            f"the model has {len(names)} output labels ({', '.join(names)}); choose the one to use as score "
            "with --label NAME|INDEX (add --all-labels for one column per label)"
        )
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in names:
            raise ModelLoadError(f"unknown label {label!r}; the model's labels are {', '.join(names)}")
        return names.index(label)
    index = int(label)
    if not 0 <= index < len(names):
        raise ModelLoadError(f"label index {index} is out of range for a model with {len(names)} labels")
    return index


class ClassifierAdapter(DecoderAdapter):
    kind = "classifier"

    def __init__(self, model: torch.nn.Module, tokenizer, settings: AdapterSettings):
        super().__init__(model, tokenizer, settings)
        self.labels = label_names(model.config)
        self.label_index = select_label(model.config, settings.label)
        self.probabilities = settings.probabilities
        self.all_labels = settings.all_labels
        if self.all_labels:
            prefix = "prob" if self.probabilities else "logit"
            self.output_names = ("score", *(f"{prefix}_{name}" for name in self.labels))
        head = getattr(model, "score", None)
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        pooled = isinstance(head, torch.nn.Linear) and isinstance(base, torch.nn.Module) and base is not model
        self.head = head if pooled and not self.model_kwargs else None
        self.base = base if self.head is not None else None
        if self.head is None:
            # Fall back on the model's own pooling, which finds the last token from pad ids.
            model.config.pad_token_id = self.pad_token_id

    def logits(self, batch: Batch) -> torch.Tensor:
        inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        if self.head is not None:
            hidden = self.base(**inputs, use_cache=False).last_hidden_state
            last = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.last_index]
            return self.head(last)
        return self.model(**inputs, use_cache=False, **self.model_kwargs).logits

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.logits(batch).float()
        if self.probabilities:
            logits = torch.sigmoid(logits) if logits.shape[-1] == 1 else torch.softmax(logits, dim=-1)
        outputs = {"score": logits[:, self.label_index]}
        if self.all_labels:
            for i, name in enumerate(self.output_names[1:]):
                outputs[name] = logits[:, i]
        return outputs

    def describe(self) -> dict[str, str]:
        what = "probability" if self.probabilities else "logit"
        label = f"{what} of label {self.labels[self.label_index]!r}" if len(self.labels) > 1 else what
        calls = (
            f"{type(self.base).__name__}.forward(input_ids, attention_mask, position_ids), then the head "
            f"{type(self.model).__name__}.score on the last real token only"
            if self.head is not None
            else f"{type(self.model).__name__}.forward(input_ids, attention_mask, position_ids)"
        )
        return {
            **super().describe(),
            "calls": calls,
            "score": f"{label} of the head at the last real token"
            + ("" if self.head is not None else " (model's own pooling)"),
        }
