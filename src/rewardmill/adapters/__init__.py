"""Model-family adapters and the registry that picks one for a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Adapter, Batch, Encoded
from .classifier import ClassifierAdapter
from .pair import PairAdapter
from .similarity import SimilarityAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    ClassifierAdapter.kind: ClassifierAdapter,
    PairAdapter.kind: PairAdapter,
    SimilarityAdapter.kind: SimilarityAdapter,
}
KINDS = ("auto", *ADAPTERS)


@dataclass(frozen=True)
class Detection:
    kind: str
    reason: str


def _is_decoder(model_type: str) -> bool:
    """A causal LM family that is not also a masked-LM encoder (BERT has a causal variant too)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def detect_kind(config, tokenizer=None) -> Detection:
    """Choose the adapter for a checkpoint from its config (and tokenizer), and say why."""
    model_type = getattr(config, "model_type", "") or ""
    architectures = list(getattr(config, "architectures", None) or [])
    arch = ", ".join(architectures) or "no architectures listed"
    with_head = any(a.endswith("ForSequenceClassification") for a in architectures)
    if _is_decoder(model_type):
        return Detection("classifier", f"{arch}: decoder model type '{model_type}' -> chat template, score at the last token")
    if with_head:
        return Detection("pair", f"{arch}: encoder with a classification head -> tokenizer(prompt, response)")
    if architectures and all(a.endswith("Model") for a in architectures):
        return Detection(
            "similarity", f"{arch}: encoder without a reward head -> prompt/response embedding cosine (relevance only)"
        )
    raise ValueError(
        f"cannot tell how to score a '{model_type}' model ({arch}); choose --kind "
        + "|".join(k for k in ADAPTERS)
    )


__all__ = ["ADAPTERS", "KINDS", "Adapter", "Batch", "Detection", "Encoded", "detect_kind"]
