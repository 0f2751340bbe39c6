"""CPU speed choices made by measurement when a model is loaded: the fp32 matrix-multiply kernel and threads.

torch's fp32 `linear` calls MKL, which on some CPUs (AMD EPYC among them) runs an AVX2 code path at about half
of what the hardware does; oneDNN, also inside torch, uses AVX-512 there. Which one wins depends on the CPU, so
rewardmill times both on the model's own largest layer at a typical batch size. Both are plain fp32 with fp32
accumulation, so scores stay within float rounding of each other.

Process-wide state is changed only when asked: the thread count only with `threads` set (a number, or "auto"
to measure 1 thread against every core this process may use), and the kernel only on the model's own CPU
layers. Timings are repeated and interleaved, and a candidate replaces the default (torch's kernel, the
current thread count) only when it is clearly faster, so a busy machine cannot talk it into a worse choice.
"""

from __future__ import annotations

import os
import statistics
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .options import CpuOptions

PROBE_TOKENS = 512  # about the rows x length of one CPU batch (docs/benchmarks.md)
ROUNDS = 3  # interleaved timing rounds per candidate; the median of the rounds decides
MARGIN = 0.10  # a non-default choice must be this much faster than the default to be taken


@dataclass(frozen=True)
class CpuChoice:
    kernel: str  # "torch" or "onednn"
    threads: int
    note: str
    prepack: bool = False  # oneDNN's weights prepacked

    @property
    def recorded(self) -> dict[str, object]:
        """The choice as a run's manifest keeps it (`--resume` makes the same one)."""
        return {"kernel": self.kernel, "threads": self.threads, "prepack": self.prepack}


def _cgroup_cpus() -> int | None:
    """CPUs allowed by a cgroup v2 quota (containers, Kubernetes limits), if one is set."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, int(int(quota) // int(period)))


def usable_cores() -> int:
    """How many threads this process should use at most: the CPU affinity, a cgroup quota, and the limit a
    host sets through OMP_NUM_THREADS (Ray sets it from an actor's num_cpus), whichever is smallest."""
    limits = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)]
    limits.append(_cgroup_cpus() or limits[0])
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.strip().isdigit() and int(omp) > 0:
        limits.append(int(omp))
    return max(1, min(limits))


def thread_candidates() -> tuple[int, ...]:
    """1 and every usable core (small shapes can be faster on one thread)."""
    return tuple(sorted({1, usable_cores()}))


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    weight = getattr(self, "_onednn_weight", None)
    return torch.ops.mkldnn._linear_pointwise(x, self.weight if weight is None else weight, self.bias, "none", [], "")


def _spare_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def cpu_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The model's plain fp32 linear layers that live on the CPU (layers on a GPU are never touched)."""
    return [
        m for m in model.modules()
        if type(m) is torch.nn.Linear and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"
    ]


def use_onednn(model: torch.nn.Module, *, prepack: bool | None = None) -> bool:
    """Route every CPU fp32 nn.Linear of `model` through oneDNN. Returns whether weights were prepacked.

    Prepacking (oneDNN's own weight layout) measured about 10% faster on a SmolLM2-sized model, but keeps
    a second copy of the weights: by default it is done only when that copy fits in a quarter of free memory.
    The original weights stay in place, so state_dict and every other use of the model are unchanged.
    """
    layers = cpu_linears(model)
    if prepack is None:
        prepack = 4 * sum(layer.weight.numel() * 4 for layer in layers) < _spare_memory_bytes()
    for layer in layers:
        if prepack:
            layer._onednn_weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), PROBE_TOKENS)
        layer.forward = types.MethodType(_onednn_forward, layer)
    return prepack


def probe_seconds(run: Callable[[], object], repeats: int = 2) -> float:
    """Best of `repeats` timed calls after one warm-up."""
    run()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def _set_threads(count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def _preference(candidate: tuple[str, int], current_threads: int) -> tuple[bool, bool, int]:
    kernel, threads = candidate
    return (threads != current_threads, kernel != "torch", threads)


def choose(model: torch.nn.Module, options: CpuOptions = CpuOptions()) -> CpuChoice:
    """Apply the kernel and thread count `options` ask for, measuring where they say auto."""
    layers = cpu_linears(model)
    before = torch.get_num_threads()
    kernels = ["torch"] if not layers or not onednn_available() else (
        ["torch", "onednn"] if options.kernel == "auto" else [options.kernel])
    if isinstance(options.threads, int):
        counts: tuple[int, ...] = (options.threads,)
    elif options.threads == "auto":
        counts = thread_candidates()
    else:
        counts = (before,)
    candidates = [(k, t) for t in counts for k in kernels]
    timings: dict[tuple[str, int], list[float]] = {c: [] for c in candidates}
    if len(candidates) > 1:
        probe = max(layers, key=lambda m: m.weight.numel())
        x = torch.randn(PROBE_TOKENS, probe.in_features)
        runs = {
            "torch": lambda: torch.nn.functional.linear(x, probe.weight, probe.bias),
            "onednn": lambda: torch.ops.mkldnn._linear_pointwise(x, probe.weight, probe.bias, "none", [], ""),
        }
        with torch.inference_mode():
            for _ in range(ROUNDS):
                for kernel, threads in candidates:
                    _set_threads(threads)
                    timings[(kernel, threads)].append(probe_seconds(runs[kernel]))
        _set_threads(before)
    median = {c: statistics.median(t) for c, t in timings.items() if t}
    if median:
        fastest = min(median.values())
        near = [c for c in candidates if median[c] <= fastest * (1 + MARGIN)]
        kernel, threads = min(near, key=lambda c: _preference(c, before))
    else:
        kernel, threads = candidates[0]
    changes = []
    if threads != before:
        _set_threads(threads)
        changes.append(f"torch threads set {before} -> {threads}")
    packed = False
    if kernel == "onednn":
        packed = use_onednn(model, prepack=options.prepack)
        changes.append(f"{len(layers)} linear layers routed to oneDNN" + (" (prepacked weights)" if packed else ""))
    note = f"{kernel} kernel, {threads} threads; " + ("; ".join(changes) if changes else "nothing changed")
    if median:
        flops = 2 * PROBE_TOKENS * probe.in_features * probe.out_features
        measured = ", ".join(f"{k}/{t} thr {flops / s / 1e9:.0f}" for (k, t), s in sorted(median.items()))
        note += (f" (median GFLOP/s of {ROUNDS} interleaved rounds on {probe.in_features}->{probe.out_features}: "
                 f"{measured}; a change needs a {MARGIN:.0%} lead)")
    return CpuChoice(kernel, threads, note, packed)
