"""Decoder LLM with a classification head (Skywork-Reward, Llama/Qwen/Gemma reward models).

Which token is read (`score_token`): by default where the model's own `*ForSequenceClassification.forward`
reads on one unpadded row, the last token that is not `config.pad_token_id` (the last token when the config
has no pad id). That is where TRL's RewardTrainer trained the head and where RewardBench reads it; when the
pad token is the EOS that ends the chat template's turn, it is the token before that EOS. The ids after that
token are dropped when the row is encoded (`read_span`): in a causal model they cannot change the hidden
state there, so every engine (torch batches, packed rows, vLLM, the server, Ray) reads the same token simply
by reading the last one. `last-token` reads the last token of the rendered input instead (OpenRLHF's
convention: it appends EOS and reads there).

The base model runs on the padded batch, and the head is applied to the hidden state of each row's last
token, found from the attention mask (never from pad-token ids), so the score does not depend on the padding
side, extra forward arguments or the head module. The model's config is never changed. Multi-label heads: `label` picks the logit used as score; `all_labels` adds
one output per label; `probabilities` turns logits into softmax probabilities (sigmoid for a single label).
"""

from __future__ import annotations

import torch

from ..family_options import ClassifierOptions, FamilyOptions
from ..loading import ModelLoadError
from ..options import TextOptions
from .base import Batch, forward_parameters
from .decoder import DecoderAdapter
from .sharing import prefix_sharing_refusal

HEAD_NAMES = ("score", "classifier")


def config_pad_id(config) -> int | None:
    """The pad id transformers' sequence-classification forward looks for (the text config's, for multimodal
    configs)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    pad = getattr(text, "pad_token_id", None)
    return pad if isinstance(pad, int) and not isinstance(pad, bool) else None


def eos_ids(config, tokenizer) -> set[int]:
    ids = {getattr(tokenizer, "eos_token_id", None)}
    for source in (config.get_text_config() if hasattr(config, "get_text_config") else config, config):
        value = getattr(source, "eos_token_id", None)
        ids.update(value if isinstance(value, (list, tuple)) else [value])
    return {i for i in ids if isinstance(i, int)}


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
    auto_classes = ("AutoModelForSequenceClassification",)
    Options = ClassifierOptions
    reads_last_tokens_only = True  # the head runs on the hidden state at the score token only (`logits`)

    @classmethod
    def detect(cls, evidence) -> str | None:
        if not evidence.decoder:
            return None
        if evidence.code is None:
            return f"{evidence.arch}: decoder model type '{evidence.model_type}' -> chat template, score at the last non-pad token"
        if evidence.auto_class == "AutoModelForSequenceClassification":
            return f"custom code {evidence.class_name}: a decoder sequence classifier -> score at the last non-pad token"
        return None

    def __init__(self, model: torch.nn.Module, tokenizer, text: TextOptions = TextOptions(),
                 options: FamilyOptions | None = None):
        super().__init__(model, tokenizer, text, options)
        options = self.options
        self.labels = label_names(model.config)
        self.label_index = select_label(model.config, options.label)
        self.probabilities = options.probabilities
        self.all_labels = options.all_labels
        if self.all_labels:
            prefix = "prob" if self.probabilities else "logit"
            self.output_names = ("score", *(f"{prefix}_{name}" for name in self.labels))
        self.head = next((getattr(model, n) for n in HEAD_NAMES if isinstance(getattr(model, n, None), torch.nn.Module)), None)
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        if self.head is None or not isinstance(base, torch.nn.Module) or base is model:
            raise ModelLoadError(
                f"cannot find the classification head ({' or '.join(HEAD_NAMES)}) and the base model of "
                f"{type(model).__name__}, so the score cannot be read at the last real token; "
                "if its forward returns a value per token, try --kind value-head"
            )
        self.base = base
        self.score_token = options.score_token or "last-non-pad"
        self.read_pad_id = config_pad_id(model.config)
        parameters = forward_parameters(base)
        self.base_passes_positions = self.passes_positions = "position_ids" in parameters
        self.base_takes_cache_flag = "use_cache" in parameters

    def read_span(self, ids: list[int]) -> list[int]:
        if self.score_token == "last-token" or self.read_pad_id is None:
            return ids
        end = len(ids)
        while end > 1 and ids[end - 1] == self.read_pad_id:  # all pad: transformers reads position 0
            end -= 1
        return ids[:end]

    @property
    def can_pack(self) -> bool:
        # Packed rows are told apart by positions restarting at 0; a base without position_ids cannot see that.
        return self.base_passes_positions and self.base_takes_cache_flag and not self.model_kwargs

    def prefix_sharing_refusal(self) -> str | None:
        return prefix_sharing_refusal(self.model, self.can_pack)

    def logits(self, batch: Batch) -> torch.Tensor:
        inputs = {"input_ids": batch.input_ids}
        if batch.attention_mask is not None:
            inputs["attention_mask"] = batch.attention_mask
        if self.base_passes_positions:
            inputs["position_ids"] = batch.position_ids
        if self.base_takes_cache_flag:
            inputs["use_cache"] = False
        hidden = self.base(**inputs, **self.model_kwargs).last_hidden_state
        index = batch.last_index.to(hidden.device)
        if batch.row_of is not None:
            rows = batch.row_of.to(hidden.device)
        else:
            rows = torch.zeros_like(index) if batch.packed else torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, index]
        head_weight = next(self.head.parameters(), None)
        return self.head(last if head_weight is None else last.to(head_weight.device))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.outputs_from_logits(self.logits(batch))

    def outputs_from_logits(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs of rows whose head logits [rows, labels] are given (by this adapter's forward or by
        another engine that ran the same head at the last token)."""
        logits = logits.float()
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
        positions = ", position_ids" if self.base_passes_positions else ""
        return {
            **super().describe(),
            "calls": f"{type(self.base).__name__}.forward(input_ids, attention_mask{positions}), then the head "
            f"{type(self.model).__name__}.{next(n for n in HEAD_NAMES if getattr(self.model, n, None) is self.head)} "
            "on the score token only",
            "score": f"{label} of the head at the score token",
            **self.describe_score_token(),
        }

    def describe_score_token(self) -> dict[str, str]:
        """Which token is read and why; a warning when the pad token is an EOS token."""
        pad = self.read_pad_id
        if pad is None:
            return {"score token": "the last token (the config has no pad_token_id; transformers' own forward "
                    "reads the last token of one unpadded row)"}
        name = repr(self.tokenizer.convert_ids_to_tokens(pad))
        info = {"score token": (
            f"the last token that is not the pad token {name} (config.pad_token_id {pad}), as transformers' "
            "own forward reads it (--score-token last-token reads the last token instead)"
            if self.score_token == "last-non-pad" else
            "the last token of the input, whatever it is (--score-token last-token; transformers' own forward "
            f"would skip trailing pad tokens {name})")}
        if pad in eos_ids(self.model.config, self.tokenizer):
            where = ("a template that ends the turn with it is read at the token before it, where the model's own "
                     "forward reads (and TRL trained the head)" if self.score_token == "last-non-pad" else
                     "reading it differs from the model's own forward, which reads the token before a trailing EOS")
            info["warning (pad token)"] = f"the pad token {name} is an EOS token: {where}"
        return info
