"""Model-family adapters and the registry that picks one for a checkpoint."""

from __future__ import annotations

from .base import Adapter, Batch, Encoded
from .classifier import ClassifierAdapter
from .multi_objective import MultiObjectiveAdapter
from .pair import PairAdapter
from .registry import ADAPTERS, KINDS, Detection, adapter_for, detect_model
from .reward_token import RewardTokenAdapter
from .similarity import SimilarityAdapter
from .value_head import ValueHeadAdapter

__all__ = [
    "ADAPTERS", "KINDS", "Adapter", "Batch", "ClassifierAdapter", "Detection", "Encoded", "MultiObjectiveAdapter",
    "PairAdapter", "RewardTokenAdapter", "SimilarityAdapter", "ValueHeadAdapter", "adapter_for", "detect_model",
]
