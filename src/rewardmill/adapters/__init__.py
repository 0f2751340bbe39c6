"""Model-family adapters and the registry that picks one for a checkpoint."""

from __future__ import annotations

from .base import Adapter, AdapterSettings, Batch, Encoded
from .classifier import ClassifierAdapter
from .multi_objective import MultiObjectiveAdapter
from .pair import PairAdapter
from .registry import AUTO_CLASSES, Plan, plan_model
from .reward_token import RewardTokenAdapter
from .similarity import SimilarityAdapter
from .value_head import ValueHeadAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    adapter.kind: adapter
    for adapter in (
        ClassifierAdapter, PairAdapter, SimilarityAdapter, MultiObjectiveAdapter, RewardTokenAdapter, ValueHeadAdapter
    )
}
assert set(ADAPTERS) == set(AUTO_CLASSES)
KINDS = ("auto", *ADAPTERS)

__all__ = ["ADAPTERS", "KINDS", "Adapter", "AdapterSettings", "Batch", "Encoded", "Plan", "plan_model"]
