"""Choices a reward model makes for itself when it loads (CPU kernel and threads by timing, oneDNN prepacking by
free memory, the device, batch shapes and packing by device and attention), recorded in a run's manifest and made
the same way again by `--resume`.

They matter for byte-identical resumes: oneDNN and torch's kernel round differently, and a timed choice can go
either way on a busy machine (a 9.7% lead against a 10% threshold), so a resumed run that timed again could
score its rows with the other kernel. A resumed run takes the recorded value for every option left automatic;
an option given explicitly is kept, and the run is refused if it differs from the recorded one
(`runs.checkpoint.describe_changes` names it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .options import CpuOptions, EngineOptions, LoadOptions


def reuse_engine(engine: EngineOptions, recorded: dict[str, Any]) -> EngineOptions:
    if engine.engine != "transformers" or recorded.get("engine") != "transformers":
        return engine
    return replace(engine, batch_size=engine.batch_size or recorded["batch_size"],
                   max_tokens_per_batch=engine.max_tokens_per_batch or recorded["max_tokens_per_batch"],
                   packing=recorded["packing"] if engine.packing is None else engine.packing,
                   prefix_sharing=recorded.get("prefix_sharing", False) if engine.prefix_sharing is None
                   else engine.prefix_sharing)


def reuse_cpu(cpu: CpuOptions, recorded: dict[str, Any]) -> CpuOptions:
    return CpuOptions(kernel=recorded["kernel"] if cpu.kernel == "auto" else cpu.kernel,
                      threads=cpu.threads if isinstance(cpu.threads, int) else recorded["threads"],
                      prepack=recorded["prepack"] if cpu.prepack is None else cpu.prepack)


def reuse_load(load: LoadOptions, recorded: dict[str, Any]) -> LoadOptions:
    if load.device is not None or load.device_map is not None or not recorded.get("device"):
        return load
    return replace(load, device=recorded["device"])


def reuse(recorded: dict[str, Any] | None, load: LoadOptions, engine: EngineOptions,
          cpu: CpuOptions) -> tuple[LoadOptions, EngineOptions, CpuOptions]:
    """The options with each automatic one replaced by the interrupted run's recorded choice."""
    if not recorded:
        return load, engine, cpu
    engine_choices = recorded.get("engine") or {}
    cpu_choices = recorded.get("cpu")
    return (reuse_load(load, engine_choices), reuse_engine(engine, engine_choices),
            reuse_cpu(cpu, cpu_choices) if cpu_choices else cpu)
