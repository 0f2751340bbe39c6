"""ArmoRM-style models: forward returns `score` plus per-objective `rewards` (and `gating_output`).

These models find each row's end from the first pad token, so they need right padding and the pad id they
were configured with. With `objectives`, one output per objective (named from the config or the quirks
table, else objective_0..n); with `gating`, the gating weights as gating_<name>.
"""

from __future__ import annotations

import copy
import re

import torch

from ..family_options import FamilyOptions, MultiObjectiveOptions
from ..options import TextOptions
from .base import Batch
from .batching import collate
from .chat import PROBE
from .decoder import DecoderAdapter
from .outputs import output_tensor

NAME_FIELDS = ("objective_names", "reward_objectives", "objectives", "attributes")
_GATING = re.compile(r"gating", re.I)


def objective_names(config, count: int, given: list[str] | None) -> list[str]:
    for candidate in (given, *(getattr(config, f, None) for f in NAME_FIELDS)):
        if isinstance(candidate, (list, tuple)) and len(candidate) == count and all(
                isinstance(n, str) for n in candidate):
            return list(candidate)
    return [f"objective_{i}" for i in range(count)]


class MultiObjectiveAdapter(DecoderAdapter):
    kind = "multi-objective"
    auto_classes = ("AutoModelForSequenceClassification", "AutoModel")
    Options = MultiObjectiveOptions

    @classmethod
    def detect(cls, evidence) -> str | None:
        code = evidence.code or ""
        if _GATING.search(code) and "rewards" in code:
            return (f"custom code {evidence.class_name} ({evidence.auto_class}) returns per-objective rewards with a "
                    "gating network")
        return None

    def __init__(self, model: torch.nn.Module, tokenizer, text: TextOptions = TextOptions(),
                 options: FamilyOptions | None = None):
        super().__init__(model, tokenizer, text, options)
        config_pad = getattr(model.config, "pad_token_id", None)
        if config_pad is not None:
            self._pad_id = config_pad  # the model looks for this id to find each row's end
            self.pad_note = f"id {config_pad}, the model's config.pad_token_id (it finds each row's end from it)"
        else:
            # The model's own code compares ids with config.pad_token_id: give it one on a private copy of
            # the config, so the caller's config object is left as it was.
            model.config = copy.copy(model.config)
            model.config.pad_token_id = self.pad_token_id
            self.pad_note += " (also set as pad_token_id on the loaded model's own copy of its config)"
        self.objectives = objective_names(model.config, self._objective_count(), self.options.objective_names)
        names = ["score"]
        if self.options.objectives:
            names += self.objectives
        if self.options.gating:
            names += [f"gating_{n}" for n in self.objectives]
        self.output_names = tuple(names)

    def _objective_count(self) -> int:
        count = getattr(self.model.config, "num_objectives", None)
        if isinstance(count, int):
            return count
        with torch.inference_mode():
            batch = collate([self.encode(PROBE)], self.pad_token_id, self.padding_side, self.device)
            return int(self.call_model(batch).rewards.shape[-1])

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        output = self.call_model(batch)
        n = batch.input_ids.shape[0]
        outputs = {"score": output_tensor(output, ("score",)).reshape(n, -1)[:, 0]}
        rewards = output.rewards.reshape(n, -1)
        gating = getattr(output, "gating_output", None)
        for i, name in enumerate(self.objectives):
            if name in self.output_names:
                outputs[name] = rewards[:, i]
            if f"gating_{name}" in self.output_names:
                outputs[f"gating_{name}"] = gating.reshape(n, -1)[:, i]
        return outputs

    def describe(self) -> dict[str, str]:
        return {
            **super().describe(),
            "calls": f"{type(self.model).__name__}.forward(input_ids, attention_mask"
            + (", position_ids" if self.passes_positions else "") + ")",
            "score": f"output.score; objectives from output.rewards: {', '.join(self.objectives)}",
        }
