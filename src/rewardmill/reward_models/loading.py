"""Load a config, tokenizer and model from the hub or a local path, with the options users expect.

The hub token is passed through to `from_pretrained` and never printed: `LoadOptions` hides it from its
repr and error messages here are scrubbed of it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..errors import RewardmillError
from .options import LoadOptions


class ModelLoadError(RewardmillError, RuntimeError):
    """The model, its config or its tokenizer could not be loaded or used as asked."""


def hub_access(name: str, options: LoadOptions) -> LoadOptions:
    """`options` for loading `name`: unchanged for a local directory or in offline mode; with `local_files_only`
    when the hub cannot be reached but the model is cached; else a ModelLoadError at once (not after retries)."""
    from pathlib import Path

    from .. import hub

    if Path(name).is_dir() or options.local_files_only or hub.offline_mode() or hub.hub_reachable():
        return options
    if hub.cached(name, options.revision):
        return replace(options, local_files_only=True)
    raise ModelLoadError(
        f"{name} is not a local directory, the Hugging Face hub ({hub.endpoint()}) cannot be reached, and the model "
        f"is not in the local cache ({hub.cache_dir()}); pass a local directory with -m, or fetch the model where "
        "the hub can be reached (HF_HUB_OFFLINE=1 skips this check and uses the cache only)"
    )


def model_positions(config) -> int | None:
    """How many positions the model has (`max_position_embeddings`), or None when the config does not say."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for value in (getattr(text_config, "max_position_embeddings", None), getattr(config, "max_position_embeddings", None)):
        if isinstance(value, int) and 0 < value < 10**7:
            return value
    return None


def _scrub(message: str, options: LoadOptions) -> str:
    return message.replace(options.token, "***") if options.token else message


def _wrap(what: str, name: str, options: LoadOptions, error: Exception) -> ModelLoadError:
    text = _scrub(str(error), options)
    if "trust_remote_code" in text and not options.trust_remote_code:
        return remote_code_refused(name, f"for its {what}")
    return ModelLoadError(f"could not load the {what} of {name}: {text}")


def load_config_dict(name: str, options: LoadOptions) -> dict:
    """The raw config.json as a dict: reading it runs none of the model's code."""
    from transformers import PretrainedConfig

    kwargs = {k: v for k, v in options.hub_kwargs().items() if k != "trust_remote_code"}
    try:
        config, _ = PretrainedConfig.get_config_dict(name, **kwargs)
    except Exception as error:
        raise _wrap("config", name, options, error) from None
    return config


def read_model_file(name: str, filename: str, options: LoadOptions) -> str | None:
    """The text of one file of the model (e.g. its modeling_*.py), or None; nothing is imported."""
    from pathlib import Path

    local = Path(name) / filename
    if Path(name).is_dir():
        return local.read_text(encoding="utf-8") if local.is_file() else None
    try:
        from transformers.utils import cached_file

        kwargs = {k: v for k, v in options.hub_kwargs().items() if k != "trust_remote_code"}
        path = cached_file(name, filename, _raise_exceptions_for_missing_entries=False, **kwargs)
        return Path(path).read_text(encoding="utf-8") if path else None
    except Exception:
        return None


def remote_code_refused(name: str, what: str) -> ModelLoadError:
    return ModelLoadError(
        f"{name} needs its own Python code ({what}) to load, and rewardmill runs a model's code only when you pass "
        "--trust-remote-code (API: trust_remote_code=True). That code runs with your permissions and can do "
        "anything you can: read it first, and pin --revision to the commit you read. Nothing of it was run."
    )


def load_config(name: str, options: LoadOptions):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, **options.hub_kwargs())
    except Exception as error:  # transformers raises OSError, ValueError, HTTP errors...
        raise _wrap("config", name, options, error) from None


def load_tokenizer(name: str, options: LoadOptions):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, **options.hub_kwargs())
    except Exception as error:
        raise _wrap("tokenizer", name, options, error) from None


def default_attention(options: LoadOptions) -> str | None:
    """flash_attention_2 for a bf16/fp16 model on a GPU when the flash-attn package is installed (its
    variable-length kernels also let the engine pack rows without padding); else None: transformers' default,
    SDPA, which on a GPU picks its own fused kernels."""
    import importlib.util

    on_gpu = options.device_map is not None or options.resolved_device().startswith("cuda")
    half = options.torch_dtype() in (torch.bfloat16, torch.float16)
    if on_gpu and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def load_model(auto_class, name: str, options: LoadOptions, **extra: Any) -> torch.nn.Module:
    """Load with `auto_class.from_pretrained`, place it, and switch to eval mode."""
    kwargs = {**options.hub_kwargs(), "dtype": options.torch_dtype(), **extra}
    if options.device_map:
        kwargs["device_map"] = options.device_map
    attention = options.attn_implementation or default_attention(options)
    if attention:
        kwargs["attn_implementation"] = attention
    try:
        model = auto_class.from_pretrained(name, **kwargs)
    except Exception as error:
        raise _wrap("weights", name, options, error) from None
    if not options.device_map:
        model.to(options.resolved_device())
    model.eval()
    return model


def empty_model(auto_class, config, options: LoadOptions) -> torch.nn.Module:
    """The model's structure on the meta device, in the dtype it would load in, with no weights: what an adapter
    reads from the model (config, head, forward signature) when another engine holds the weights."""
    dtype = options.torch_dtype()
    if dtype == "auto":
        dtype = getattr(config, "dtype", None) or torch.float32
    with torch.device("meta"):
        model = auto_class.from_config(config)
    return model.to(dtype).eval()


def default_max_length(config, tokenizer) -> int:
    """The longest input the model takes: tokenizer limit and position table, whichever is smaller."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limits.append(getattr(text_config, "max_position_embeddings", None))
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**7]
    return min(usable) if usable else 4096
