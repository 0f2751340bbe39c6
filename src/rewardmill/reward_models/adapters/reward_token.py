"""InternLM2-reward-style models: a reward token appended to the rendered conversation, read by get_score.

rewardmill does what the model's own `get_score` does (render, tokenize without special tokens, append the
reward token, forward with a mask), but in padded batches: the model's output is read at each row's last
real token, which is the reward token.
"""

from __future__ import annotations

import re

import torch

from ..family_options import FamilyOptions, RewardTokenOptions
from ..loading import ModelLoadError
from ..options import TextOptions
from .base import Batch
from .decoder import DecoderAdapter
from .outputs import output_tensor, per_row

_SIGNAL = re.compile(r"def get_scores?\b|reward_token_id")


def reward_token_id(model, given: int | None) -> int:
    for candidate in (given, getattr(model, "reward_token_id", None), getattr(model.config, "reward_token_id", None)):
        if isinstance(candidate, int):
            return candidate
    raise ModelLoadError(
        "this reward-token model does not say which token carries the reward; pass --reward-token-id ID "
        "or add reward_token_id to a --quirks file"
    )


class RewardTokenAdapter(DecoderAdapter):
    kind = "reward-token"
    auto_classes = ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM")
    Options = RewardTokenOptions

    @classmethod
    def detect(cls, evidence) -> str | None:
        if evidence.code and _SIGNAL.search(evidence.code):
            return f"custom code {evidence.class_name} ({evidence.auto_class}) defines get_score / a reward token"
        return None

    def __init__(self, model: torch.nn.Module, tokenizer, text: TextOptions = TextOptions(),
                 options: FamilyOptions | None = None):
        options = options if options is not None else self.Options()
        token = reward_token_id(model, getattr(options, "reward_token_id", None))
        super().__init__(model, tokenizer, text, options, suffix_ids=[token])

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"score": per_row(output_tensor(self.call_model(batch)), batch)}

    def describe(self) -> dict[str, str]:
        methods = [m for m in ("get_score", "get_scores") if hasattr(self.model, m)]
        return {
            **super().describe(),
            "calls": f"{type(self.model).__name__}.forward(input_ids, attention_mask"
            + (", position_ids" if self.passes_positions else "") + ") in batches"
            + (f" (as its {'/'.join(methods)} does for one row)" if methods else ""),
            "score": f"model output at the reward token {self.chat.suffix_ids[0]}",
        }
