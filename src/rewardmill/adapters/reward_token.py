"""InternLM2-reward-style models: a reward token appended to the rendered conversation, read by get_score.

rewardmill does what the model's own `get_score` does (render, tokenize without special tokens, append the
reward token, forward with a mask), but in padded batches: the model's output is read at each row's last
real token, which is the reward token.
"""

from __future__ import annotations

import torch

from ..loading import ModelLoadError
from .base import AdapterSettings, Batch
from .decoder import DecoderAdapter
from .outputs import output_tensor, per_row


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

    def __init__(self, model: torch.nn.Module, tokenizer, settings: AdapterSettings):
        super().__init__(model, tokenizer, settings, suffix_ids=[reward_token_id(model, settings.reward_token_id)])

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        output = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **self.model_kwargs)
        return {"score": per_row(output_tensor(output), batch)}

    def describe(self) -> dict[str, str]:
        methods = [m for m in ("get_score", "get_scores") if hasattr(self.model, m)]
        return {
            **super().describe(),
            "calls": f"{type(self.model).__name__}.forward(input_ids, attention_mask) in batches"
            + (f" (as its {'/'.join(methods)} does for one row)" if methods else ""),
            "score": f"model output at the reward token {self.chat.suffix_ids[0]}",
        }
