"""Choose the adapter for a checkpoint, from its config, its custom code (read as text, never run) and
the quirks table, and say why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..loading import ModelLoadError
from ..quirks import Quirk, find_quirk

# Auto classes to load each kind with, most specific first; a model's auto_map entry wins when present.
AUTO_CLASSES = {
    "classifier": ("AutoModelForSequenceClassification",),
    "pair": ("AutoModelForSequenceClassification", "AutoModel"),
    "similarity": ("AutoModel",),
    "multi-objective": ("AutoModelForSequenceClassification", "AutoModel"),
    "reward-token": ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM"),
    "value-head": ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM"),
}
REMOTE_KINDS = "multi-objective|reward-token|value-head|pair|classifier"


@dataclass(frozen=True)
class Plan:
    kind: str
    reason: str
    auto_class: str
    remote_code: bool
    remote_class: str | None = None
    quirk: Quirk | None = None


def _model_families() -> tuple[set[str], set[str]]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES), set(MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def is_decoder(model_type: str) -> bool:
    """A causal LM family that is not also a masked-LM encoder (BERT has a causal variant too)."""
    causal, masked = _model_families()
    return model_type in causal and model_type not in masked


def is_encoder(model_type: str) -> bool:
    return model_type in _model_families()[1]


def detect_builtin(model_type: str, architectures: list[str]) -> tuple[str, str]:
    arch = ", ".join(architectures) or "no architectures listed"
    if is_decoder(model_type):
        return "classifier", f"{arch}: decoder model type '{model_type}' -> chat template, score at the last token"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "pair", f"{arch}: encoder with a classification head -> tokenizer(prompt, response)"
    if architectures and all(a.endswith("Model") for a in architectures):
        return "similarity", f"{arch}: encoder without a reward head -> prompt/response embedding cosine (relevance only)"
    raise ModelLoadError(f"cannot tell how to score a '{model_type}' model ({arch}); choose --kind {REMOTE_KINDS}|similarity")


_SIGNALS = (
    ("reward-token", re.compile(r"def get_scores?\b|reward_token_id"), "defines get_score / a reward token"),
    ("multi-objective", re.compile(r"gating", re.I), "returns per-objective rewards with a gating network"),
    ("value-head", re.compile(r"v_head|value_head", re.I), "has a value head read per token"),
)


def detect_remote(model_type: str, auto_map: dict, read_code: Callable[[str], str | None]) -> tuple[str, str, str]:
    """(kind, reason, class) for a model whose class comes from its own code, judged from the code's text."""
    entries = {k: v for k, v in auto_map.items() if k not in ("AutoConfig", "AutoTokenizer")}
    for auto_class, target in entries.items():
        target = target[0] if isinstance(target, (list, tuple)) else target
        module, _, cls = target.split("--")[-1].rpartition(".")
        text = read_code(module.replace(".", "/") + ".py") or ""
        for kind, pattern, what in _SIGNALS:
            if pattern.search(text) and (kind != "multi-objective" or "rewards" in text):
                return kind, f"custom code {cls} ({auto_class}) {what}", cls
        if is_encoder(model_type):
            return "pair", f"custom code {cls} ({auto_class}) on a '{model_type}' encoder -> tokenizer(prompt, response)", cls
        if auto_class == "AutoModelForSequenceClassification" and is_decoder(model_type):
            return "classifier", f"custom code {cls}: a decoder sequence classifier -> score at the last token", cls
    found = ", ".join(f"{k}: {v}" for k, v in entries.items()) or "an auto_map without model classes"
    raise ModelLoadError(
        f"the model ships custom code ({found}) whose outputs rewardmill does not recognise; "
        f"choose how to read it with --kind {REMOTE_KINDS} (see `rewardmill inspect`), "
        "or describe it in a --quirks file"
    )


def plan_model(
    name: str,
    config: dict,
    *,
    kind: str = "auto",
    quirks: list[Quirk] = (),  # type: ignore[assignment]
    read_code: Callable[[str], str | None] = lambda filename: None,
) -> Plan:
    """Decide kind and auto class for `name` from its raw config dict, without running any of its code."""
    model_type = config.get("model_type", "") or ""
    architectures = list(config.get("architectures") or [])
    auto_map = dict(config.get("auto_map") or {})
    quirk = find_quirk(list(quirks), name, architectures)
    remote_class = None
    if kind != "auto":
        reason = f"chosen with --kind {kind}"
    elif quirk is not None and "kind" in quirk.settings:
        kind = quirk.settings["kind"]
        reason = f"quirks table entry {quirk.match or quirk.architecture!r}" + (
            f": {quirk.settings['note']}" if "note" in quirk.settings else ""
        )
    elif set(auto_map) - {"AutoConfig", "AutoTokenizer"}:
        kind, reason, remote_class = detect_remote(model_type, auto_map, read_code)
    else:
        kind, reason = detect_builtin(model_type, architectures)
    if kind not in AUTO_CLASSES:
        raise ModelLoadError(f"unknown kind {kind!r}; known kinds: {', '.join(AUTO_CLASSES)}")
    preferred = AUTO_CLASSES[kind]
    auto_class = next((c for c in preferred if c in auto_map), preferred[0])
    remote = auto_class in auto_map or "AutoConfig" in auto_map
    return Plan(kind, reason, auto_class, remote, remote_class, quirk)
