"""CPU speed choices made by measurement when a model is loaded: the fp32 matrix-multiply kernel and threads.

torch's fp32 `linear` calls MKL, which on some CPUs (AMD EPYC among them) runs an AVX2 code path at about half
of what the hardware does; oneDNN, also inside torch, uses AVX-512 there. Which one wins depends on the CPU, so
rewardmill times both on the model's own largest layer at a typical batch size and keeps the faster one.
Both are plain fp32 with fp32 accumulation, so scores stay within float rounding of each other.
The same probe, run at each candidate thread count, picks the thread count (2 threads can be far slower
than 1 for small shapes on some machines).
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch

KERNELS = ("auto", "torch", "onednn")
PROBE_TOKENS = 512  # about the rows x length of one CPU batch (docs/benchmarks.md)


@dataclass(frozen=True)
class CpuChoice:
    kernel: str  # "torch" or "onednn"
    threads: int
    note: str


def thread_candidates() -> tuple[int, ...]:
    """1 and every core this process may use (small shapes can be faster on one thread)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return tuple(sorted({1, cores}))


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    weight = getattr(self, "_onednn_weight", None)
    return torch.ops.mkldnn._linear_pointwise(x, self.weight if weight is None else weight, self.bias, "none", [], "")


def _spare_memory_bytes() -> int:
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if type(m) is torch.nn.Linear and m.weight.dtype == torch.float32]


def use_onednn(model: torch.nn.Module, *, prepack: bool | None = None) -> bool:
    """Route every fp32 nn.Linear of `model` through oneDNN. Returns whether weights were prepacked.

    Prepacking (oneDNN's own weight layout) measured about 10% faster on a SmolLM2-sized model, but keeps
    a second copy of the weights: by default it is done only when that copy fits in a quarter of free memory.
    The original weights stay in place, so state_dict and every other use of the model are unchanged.
    """
    layers = _linears(model)
    if prepack is None:
        prepack = 4 * sum(layer.weight.numel() * 4 for layer in layers) < _spare_memory_bytes()
    for layer in layers:
        if prepack:
            layer._onednn_weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), PROBE_TOKENS)
        layer.forward = types.MethodType(_onednn_forward, layer)
    return prepack


def _best_time(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def choose(model: torch.nn.Module, *, kernel: str = "auto", threads: int | None = None,
           thread_candidates: tuple[int, ...] | None = None) -> CpuChoice:
    """Measure and apply the kernel (unless forced) and the thread count (unless given) for a CPU fp32 model."""
    if kernel not in KERNELS:
        raise ValueError(f"cpu kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    layers = _linears(model)
    if not layers or not onednn_available():
        kernel = "torch"
    if threads:
        torch.set_num_threads(threads)
    if not layers:
        return CpuChoice("torch", torch.get_num_threads(), "no fp32 linear layers: torch defaults")
    probe = max(layers, key=lambda m: m.weight.numel())
    x = torch.randn(PROBE_TOKENS, probe.in_features)
    runs = {
        "torch": lambda: torch.nn.functional.linear(x, probe.weight, probe.bias),
        "onednn": lambda: torch.ops.mkldnn._linear_pointwise(x, probe.weight, probe.bias, "none", [], ""),
    }
    candidates = [kernel] if kernel != "auto" else ["torch", "onednn"]
    counts = (threads,) if threads else (thread_candidates or tuple(sorted({1, torch.get_num_threads()})))
    timings: dict[tuple[str, int], float] = {}
    with torch.inference_mode():
        for count in counts:
            torch.set_num_threads(count)
            for name in candidates:
                timings[(name, count)] = _best_time(runs[name])
    (best_kernel, best_threads), best = min(timings.items(), key=lambda item: item[1])
    torch.set_num_threads(best_threads)
    packed = use_onednn(model) if best_kernel == "onednn" else False
    flops = 2 * PROBE_TOKENS * probe.in_features * probe.out_features
    measured = ", ".join(f"{k}/{t} thr {flops / s / 1e9:.0f}" for (k, t), s in sorted(timings.items()))
    note = (
        f"{best_kernel} kernel{' (prepacked weights)' if packed else ''}, {best_threads} threads "
        f"(measured GFLOP/s on {probe.in_features}->{probe.out_features}: {measured})"
    )
    return CpuChoice(best_kernel, best_threads, note)
