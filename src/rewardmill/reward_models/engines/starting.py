"""Which engine runs a model, and starting it: the one place that maps `EngineOptions.engine` to an engine.

Whether an engine can run a model is its declared `Capabilities`' answer (`refusal`), asked before any weights
load; the options it has no use for are refused by the engine itself (`check_options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import OptionsError
from ..adapters.base import Adapter
from ..adapters.registry import Detection
from ..options import CpuOptions, EngineOptions, LoadOptions
from .protocol import RewardEngine, StartableEngine
from .transformers_engine import Engine


def engine_class(options: EngineOptions) -> type[StartableEngine]:
    """The engine class `options.engine` names (vLLM's imported only when chosen)."""
    if options.engine == "vllm":
        from .vllm_engine import VllmEngine

        return VllmEngine
    return Engine


def check_engine(name: str, detection: Detection, options: EngineOptions) -> None:
    """An OptionsError when the engine the options name cannot run the model `detection` describes."""
    refusal = engine_class(options).capabilities.refusal(detection)
    if refusal:
        raise OptionsError(f"--engine {options.engine} cannot run {name}: {refusal}. Use --engine transformers "
                           "(the default) for it")


def check_engine_options(load: LoadOptions, model_kwargs: Mapping[str, Any], cpu: CpuOptions,
                         options: EngineOptions) -> None:
    """An OptionsError naming the loading options the chosen engine has no equivalent for."""
    engine_class(options).check_options(load, model_kwargs, cpu, options)


def start_engine(adapter: Adapter, options: EngineOptions = EngineOptions(), *, name: str | None = None,
                 load: LoadOptions = LoadOptions()) -> RewardEngine:
    """The engine `options` name, started over `adapter` (`name` and `load`: where an engine that loads the
    weights itself finds them; by default the adapter's model's own path)."""
    if name is None:
        name = getattr(getattr(adapter.model, "config", None), "_name_or_path", "") or ""
    return engine_class(options).start(adapter, options, name=name, load=load)
