"""Choose the adapter for a checkpoint, from its config, its custom code (read as text, never run) and the
quirks table, and say why. The registry is the ordered list of adapter classes: each declares its kind, the
auto classes to load it with, its options and how to recognise its models (`detect`); the first that
recognises a checkpoint wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ..loading import ModelLoadError
from ..quirks import Quirk, find_quirk
from . import code_reading
from .base import Adapter
from .classifier import ClassifierAdapter
from .multi_objective import MultiObjectiveAdapter
from .pair import PairAdapter
from .reward_token import RewardTokenAdapter
from .similarity import SimilarityAdapter
from .value_head import ValueHeadAdapter

# Most specific signal first: reward-token code often has a v_head too.
ADAPTERS: tuple[type[Adapter], ...] = (
    MultiObjectiveAdapter, RewardTokenAdapter, ValueHeadAdapter, PairAdapter, ClassifierAdapter, SimilarityAdapter,
)
KINDS: tuple[str, ...] = tuple(adapter.kind for adapter in ADAPTERS)
CUSTOM_CODE_KINDS = "|".join(a.kind for a in ADAPTERS if a is not SimilarityAdapter)


def adapter_for(kind: str) -> type[Adapter]:
    for adapter in ADAPTERS:
        if adapter.kind == kind:
            return adapter
    raise ModelLoadError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")


@lru_cache(maxsize=1)
def _families() -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """Decoder and encoder model types, and the config and base-model class names of encoders."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    masked = frozenset(MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    decoders = frozenset(t for t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if t not in masked)
    configs = frozenset(CONFIG_MAPPING_NAMES[t] for t in masked if t in CONFIG_MAPPING_NAMES)
    models = frozenset(name for t in masked for name in _names(MODEL_MAPPING_NAMES.get(t)))
    return decoders, masked, configs, models


def _names(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def is_decoder(model_type: str) -> bool:
    """A causal LM family that is not also a masked-LM encoder (BERT has a causal variant too)."""
    return model_type in _families()[0]


def is_encoder(model_type: str) -> bool:
    return model_type in _families()[1]


@dataclass(frozen=True)
class Evidence:
    """What the registry knows about a checkpoint when asking each adapter whether it is one of its own.
    For custom code, `code` is the text of the module behind `auto_class` (read, never run)."""

    model_type: str
    architectures: tuple[str, ...]
    decoder: bool
    encoder: bool
    auto_class: str | None = None
    class_name: str | None = None
    code: str | None = None
    encoder_regression: str | None = None  # why custom code looks like a seed-001 encoder regression model

    @property
    def arch(self) -> str:
        return ", ".join(self.architectures) or "no architectures listed"


def encoder_regression(code: str | None, config_code: str | None, class_name: str) -> str | None:
    """Why `class_name` looks like an encoder regression model (seed 001), from its code; None if it does not."""
    _, _, encoder_configs, encoder_models = _families()
    subclassed = sorted((code_reading.config_bases(config_code) | code_reading.config_bases(code)) & encoder_configs)
    built = sorted(code_reading.classes_built(code, class_name) & encoder_models)
    if not (subclassed or built) or not code_reading.forward_returns_tensor(code, class_name):
        return None
    facts = ([f"its config subclasses {', '.join(subclassed)}"] if subclassed else []) + (
        [f"it builds {', '.join(built)} inside"] if built else [])
    return " and ".join(facts) + ", and its forward returns the reward tensor"


def _module_file(target) -> tuple[str, str]:
    """('modeling_x.py', 'ClassName') for an auto_map target such as 'repo--modeling_x.ClassName'."""
    target = target[0] if isinstance(target, (list, tuple)) else target
    module, _, cls = target.split("--")[-1].rpartition(".")
    return module.replace(".", "/") + ".py", cls


def detect_remote(model_type: str, architectures: tuple[str, ...], auto_map: dict,
                  read_code: Callable[[str], str | None]) -> tuple[str, str, str]:
    """(kind, reason, class) for a model whose class comes from its own code, judged from the code's text."""
    entries = {k: v for k, v in auto_map.items() if k not in ("AutoConfig", "AutoTokenizer")}
    config_code = read_code(_module_file(auto_map["AutoConfig"])[0]) if "AutoConfig" in auto_map else None
    for auto_class, target in entries.items():
        filename, cls = _module_file(target)
        code = read_code(filename) or ""
        evidence = Evidence(
            model_type, architectures, is_decoder(model_type), is_encoder(model_type), auto_class, cls, code,
            encoder_regression(code, config_code, cls),
        )
        for adapter in ADAPTERS:
            reason = adapter.detect(evidence)
            if reason:
                return adapter.kind, reason, cls
    found = ", ".join(f"{k}: {v}" for k, v in entries.items()) or "an auto_map without model classes"
    raise ModelLoadError(
        f"the model ships custom code ({found}) whose outputs rewardmill does not recognise; "
        f"choose how to read it with --kind {CUSTOM_CODE_KINDS} (see `rewardmill inspect`), "
        "or describe it in a --quirks file"
    )


def detect_builtin(model_type: str, architectures: tuple[str, ...]) -> tuple[str, str]:
    evidence = Evidence(model_type, architectures, is_decoder(model_type), is_encoder(model_type))
    for adapter in ADAPTERS:
        reason = adapter.detect(evidence)
        if reason:
            return adapter.kind, reason
    raise ModelLoadError(
        f"cannot tell how to score a '{model_type}' model ({evidence.arch}); choose --kind {'|'.join(KINDS)}"
    )


@dataclass(frozen=True)
class Detection:
    """What the registry found a checkpoint to be: its kind (family) and why, the auto class to load it with,
    whether it loads with its own code (and which class), and the quirks table entry that matched."""

    kind: str
    reason: str
    auto_class: str
    remote_code: bool
    remote_class: str | None = None
    quirk: Quirk | None = None

    @property
    def adapter(self) -> type[Adapter]:
        return adapter_for(self.kind)


def detect_model(
    name: str,
    config: dict,
    *,
    kind: str = "auto",
    quirks: list[Quirk] = (),  # type: ignore[assignment]
    read_code: Callable[[str], str | None] = lambda filename: None,
) -> Detection:
    """Decide kind and auto class for `name` from its raw config dict, without running any of its code."""
    model_type = config.get("model_type", "") or ""
    architectures = tuple(config.get("architectures") or ())
    auto_map = dict(config.get("auto_map") or {})
    quirk = find_quirk(list(quirks), name, list(architectures))
    remote_class = None
    if kind != "auto":
        reason = f"chosen with --kind {kind}"
    elif quirk is not None and "kind" in quirk.settings:
        kind = quirk.settings["kind"]
        reason = f"quirks table entry {quirk.match or quirk.architecture!r}" + (
            f": {quirk.settings['note']}" if "note" in quirk.settings else ""
        )
    elif set(auto_map) - {"AutoConfig", "AutoTokenizer"}:
        kind, reason, remote_class = detect_remote(model_type, architectures, auto_map, read_code)
    else:
        kind, reason = detect_builtin(model_type, architectures)
    preferred = adapter_for(kind).auto_classes
    auto_class = next((c for c in preferred if c in auto_map), preferred[0])
    remote = auto_class in auto_map or "AutoConfig" in auto_map
    return Detection(kind, reason, auto_class, remote, remote_class, quirk)
