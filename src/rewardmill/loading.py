"""Load a config, tokenizer and model from the hub or a local path, with the options users expect.

The hub token is passed through to `from_pretrained` and never printed: `LoadOptions` hides it from its
repr and error messages are scrubbed of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch

from .errors import OptionsError, RewardmillError

DType = Literal["default", "auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(DType)


class ModelLoadError(RewardmillError, RuntimeError):
    """The model, its config or its tokenizer could not be loaded or used as asked."""


@dataclass(frozen=True)
class LoadOptions:
    revision: str | None = None
    dtype: DType = "default"
    device: str | None = None
    device_map: str | None = None
    trust_remote_code: bool = False
    token: str | None = field(default=None, repr=False)
    attn_implementation: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise OptionsError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def torch_dtype(self) -> torch.dtype | str:
        """'default' means bf16 on GPU and fp32 on CPU; 'auto' means whatever the checkpoint was saved in."""
        if self.dtype == "default":
            on_gpu = self.device_map is not None or self.resolved_device().startswith("cuda")
            return torch.bfloat16 if on_gpu and torch.cuda.is_available() else torch.float32
        if self.dtype == "auto":
            return "auto"
        return getattr(torch, self.dtype)

    def hub_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.token:
            kwargs["token"] = self.token
        return kwargs


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


def load_model(auto_class, name: str, options: LoadOptions, **extra: Any) -> torch.nn.Module:
    """Load with `auto_class.from_pretrained`, place it, and switch to eval mode."""
    kwargs = {**options.hub_kwargs(), "dtype": options.torch_dtype(), **extra}
    if options.device_map:
        kwargs["device_map"] = options.device_map
    if options.attn_implementation:
        kwargs["attn_implementation"] = options.attn_implementation
    try:
        model = auto_class.from_pretrained(name, **kwargs)
    except Exception as error:
        raise _wrap("weights", name, options, error) from None
    if not options.device_map:
        model.to(options.resolved_device())
    model.eval()
    return model


def default_max_length(config, tokenizer) -> int:
    """The longest input the model takes: tokenizer limit and position table, whichever is smaller."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limits.append(getattr(text_config, "max_position_embeddings", None))
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**7]
    return min(usable) if usable else 4096
