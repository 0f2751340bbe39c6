"""Value-head models: forward returns a value per token; the score is the value at the last real token."""

from __future__ import annotations

import re

import torch

from .base import Batch
from .decoder import DecoderAdapter
from .outputs import output_tensor, per_row
from .sharing import prefix_sharing_refusal

VALUE_FIELDS = ("values", "value", "rewards", "logits", "scores", "score")
_SIGNAL = re.compile(r"v_head|value_head", re.I)


class ValueHeadAdapter(DecoderAdapter):
    kind = "value-head"
    auto_classes = ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM")

    @classmethod
    def detect(cls, evidence) -> str | None:
        if evidence.code and _SIGNAL.search(evidence.code):
            return f"custom code {evidence.class_name} ({evidence.auto_class}) has a value head read per token"
        return None

    def prefix_sharing_refusal(self) -> str | None:
        # its own code must declare support (sharing.py): that it passes position_ids and the 4D mask through
        return prefix_sharing_refusal(self.model, self.passes_positions and not self.model_kwargs)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        output = self.call_model(batch)
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
            "calls": f"{type(self.model).__name__}.forward(input_ids, attention_mask"
            + (", position_ids" if self.passes_positions else "") + ")",
            "score": f"per-token value read at the last real token ({self.padding_side} padding)",
        }
