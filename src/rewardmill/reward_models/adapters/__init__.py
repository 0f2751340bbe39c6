"""Model-family adapters and the registry that picks one for a checkpoint."""

from __future__ import annotations

from .base import Adapter, Batch, Encoded, FamilyOptions, ForwardOptions, TextOptions
from .classifier import ClassifierAdapter, ClassifierOptions
from .decoder import DecoderOptions
from .multi_objective import MultiObjectiveAdapter, MultiObjectiveOptions
from .pair import PairAdapter, PairOptions
from .registry import ADAPTERS, KINDS, Detection, adapter_for, detect_model
from .reward_token import RewardTokenAdapter, RewardTokenOptions
from .similarity import SimilarityAdapter
from .value_head import ValueHeadAdapter

__all__ = [
    "ADAPTERS", "KINDS", "Adapter", "Batch", "ClassifierAdapter", "ClassifierOptions", "DecoderOptions", "Detection",
    "Encoded", "FamilyOptions", "ForwardOptions", "MultiObjectiveAdapter", "MultiObjectiveOptions", "PairAdapter",
    "PairOptions", "RewardTokenAdapter", "RewardTokenOptions", "SimilarityAdapter", "TextOptions", "ValueHeadAdapter",
    "adapter_for", "detect_model",
]
