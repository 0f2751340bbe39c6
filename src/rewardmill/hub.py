"""Is the Hugging Face hub reachable, and is a model in the local cache? Asked once, quickly.

Without this, every `from_pretrained` of a hub id spends about 25 s in retries when the hub cannot be reached
before it fails. rewardmill probes the hub once per process (a HEAD request with a short timeout, through
huggingface_hub's own HTTP session, so its proxy and endpoint settings apply) and then either loads from the
local cache without asking the hub again, or stops at once with what to do.
"""

from __future__ import annotations

from functools import lru_cache

PROBE_TIMEOUT = 3.0


def offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@lru_cache(maxsize=None)
def hub_reachable(url: str | None = None, timeout: float = PROBE_TIMEOUT) -> bool:
    """One HEAD request to the hub endpoint; any answer at all (even an error status) means reachable."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(url or endpoint(), timeout=timeout)
        return True
    except Exception:
        return False


def cached(name: str, revision: str | None = None) -> bool:
    """Whether the model's config.json is in the local hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str)
    except Exception:
        return False


def cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE
