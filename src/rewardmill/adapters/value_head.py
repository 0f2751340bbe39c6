"""Value-head models: forward returns a value per token; the score is the value at the last real token."""

from __future__ import annotations

import torch

from .base import Batch
from .decoder import DecoderAdapter
from .outputs import output_tensor, per_row

VALUE_FIELDS = ("values", "value", "rewards", "logits", "scores", "score")


class ValueHeadAdapter(DecoderAdapter):
    kind = "value-head"

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        output = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **self.model_kwargs)
        if isinstance(output, tuple) and not hasattr(output, "keys"):
            # TRL-style (lm_logits, loss, value): the value is the last tensor shaped [batch, length].
            shaped = [t for t in output if isinstance(t, torch.Tensor) and t.shape[:2] == batch.input_ids.shape]
            values = shaped[-1]
        else:
            values = output_tensor(output, VALUE_FIELDS)
        return {"score": per_row(values, batch)}

    def describe(self) -> dict[str, str]:
        return {
            **super().describe(),
            "calls": f"{type(self.model).__name__}.forward(input_ids, attention_mask)",
            "score": f"per-token value read at the last real token ({self.padding_side} padding)",
        }
