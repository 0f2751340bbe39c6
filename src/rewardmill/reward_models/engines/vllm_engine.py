"""`--engine vllm`: a decoder sequence classifier run by vLLM's pooling runner instead of torch batches.

rewardmill still renders and tokenizes every row (chat template, BOS policy, truncation, per-row errors) and
hands vLLM the token ids, so vLLM adds no BOS of its own and sees exactly what the transformers engine would
run. vLLM packs the sequences without padding, runs the head at each one's last token, and returns the raw
logits (no activation), which the classifier adapter turns into outputs as it does its own. The adapter keeps
an empty (meta-device) copy of the model's structure for what it reads from it, so the weights are loaded once,
by vLLM.

Prefix sharing (`--prefix-sharing`, on by default) is vLLM's automatic prefix caching, asked for explicitly: it
reuses the KV of whole cache blocks a row shares with one computed before it. Each call hands vLLM its rows sorted
by token ids, so that the responses to one prompt are adjacent and find that prompt's blocks while they are still
cached; the results are mapped back to the order given.

Only what vLLM can run is accepted: built-in decoder sequence classifiers (its declared `capabilities`). Models
with their own code, pair-input encoders and custom heads get an error naming `--engine transformers` before
anything loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from ...errors import OptionsError
from ..adapters import Adapter
from ..adapters.base import Encoded
from ..adapters.chat import PROBE
from ..loading import ModelLoadError
from ..options import CpuOptions, EngineOptions, LoadOptions
from .protocol import Capabilities, Result, StartableEngine
from .running import EngineFailure, in_order, read, settle_batches
from .vllm_setup import import_vllm, llm_arguments, on_cpu

FLAG = "--engine vllm"
ALL_AT_ONCE = 1 << 30  # vLLM schedules and packs its own batches: it gets every row of a call at once


def vllm_dtype(load: LoadOptions) -> str:
    dtype = load.torch_dtype()
    return dtype if isinstance(dtype, str) else str(dtype).replace("torch.", "")


def prefix_caching(llm) -> tuple[bool, int]:
    """Whether the started vLLM engine caches prefixes (as it settled it: the user's --vllm-option wins), and its
    block size in tokens."""
    cache = llm.llm_engine.vllm_config.cache_config
    return bool(cache.enable_prefix_caching), cache.block_size


def start_llm(name: str, load: LoadOptions, engine: EngineOptions, max_length: int):
    """vLLM's pooling runner for `name`, started in this process; a ModelLoadError if it will not start."""
    vllm = import_vllm(FLAG)
    ours: dict[str, Any] = dict(runner="pooling", dtype=vllm_dtype(load), max_model_len=max_length, seed=0,
                                trust_remote_code=False)
    if load.revision:
        ours["revision"] = load.revision
    if load.token:
        ours["hf_token"] = load.token
    if engine.batch_size:
        ours["max_num_seqs"] = engine.batch_size
    if engine.max_tokens_per_batch:
        ours["max_num_batched_tokens"] = max(engine.max_tokens_per_batch, max_length)
    ours["enable_prefix_caching"] = engine.prefix_sharing is not False
    try:
        return vllm.LLM(**llm_arguments(name, engine.vllm_options, **ours))
    except Exception as error:  # vLLM raises many kinds; the message is what the user needs
        text = str(error).replace(load.token, "***") if load.token else str(error)
        raise ModelLoadError(f"vLLM could not start {name}: {type(error).__name__}: {text}. "
                             "--engine transformers runs the model in torch instead") from None


class VllmEngine(StartableEngine):
    """The engine interface over vLLM's `LLM.classify` on token ids: every row of a call in one `classify`."""

    capabilities = Capabilities(runner="vLLM's pooling runner", kinds=frozenset({"classifier"}),
                                kinds_named="decoder sequence classifiers", own_code=False, packs=True,
                                loads_weights=True, prefix_sharing=True)

    def __init__(self, adapter: Adapter, options: EngineOptions, llm):
        from vllm import PoolingParams

        if not hasattr(adapter, "outputs_from_logits"):
            raise OptionsError(f"{FLAG} cannot read the outputs of a {adapter.kind} model")
        self.adapter = adapter
        self.llm = llm
        self.options = replace(options, batch_size=ALL_AT_ONCE, max_tokens_per_batch=ALL_AT_ONCE, min_fill=0.0)
        self.asked = options  # vLLM's own batch limits (max_num_seqs, max_num_batched_tokens), for describe()
        self.params = PoolingParams(use_activation=False)
        self.prefix_sharing, self.block_size = prefix_caching(llm)

    @classmethod
    def start(cls, adapter: Adapter, options: EngineOptions, *, name: str, load: LoadOptions) -> VllmEngine:
        """Start vLLM on `name` and score one short conversation, so that a model or machine vLLM cannot run
        fails here, at load time, rather than as an engine failure in the middle of a run."""
        engine = cls(adapter, options, start_llm(name, load, options, adapter.max_length))
        try:
            engine.step([adapter.encode(PROBE)])
        except Exception as error:
            raise ModelLoadError(f"vLLM started {name} but could not score with it: {error}. --engine transformers "
                                 "runs the model in torch instead") from None
        return engine

    @classmethod
    def check_options(cls, load: LoadOptions, model_kwargs: Mapping[str, Any], cpu: CpuOptions,
                      options: EngineOptions) -> None:
        """Refuse the options of the transformers engine that vLLM has no equivalent for, rather than drop them."""
        given = [flag for flag, used in (
            ("--device", load.device), ("--device-map", load.device_map),
            ("--attn-implementation", load.attn_implementation), ("--model-kwarg", model_kwargs),
            ("--threads N", isinstance(cpu.threads, int)), ("--cpu-kernel", cpu.kernel != "auto"),
            ("--packing/--no-packing (vLLM always packs)", options.packing is not None),
        ) if used]
        if given:
            raise OptionsError(f"{', '.join(given)} applies to --engine transformers; vLLM places the model and "
                               "chooses its kernels and threads itself (pass its own settings with --vllm-option "
                               "KEY=VALUE)")

    def batch_indices(self, items: Sequence[Encoded]) -> list[list[int]]:
        return [list(range(len(items)))] if items else []

    def submission_order(self, items: Sequence[Encoded]) -> list[int]:
        """The order in which vLLM is handed the rows: by token ids when it caches prefixes, so that rows sharing a
        prefix are adjacent and reuse its cached blocks before other rows evict them."""
        if not self.prefix_sharing:
            return list(range(len(items)))
        return sorted(range(len(items)), key=lambda i: items[i].input_ids)

    def step(self, items: Sequence[Encoded]) -> list[dict[str, float]]:
        order = self.submission_order(items)
        prompts = [{"prompt_token_ids": list(items[i].input_ids)} for i in order]
        try:
            outputs = self.llm.classify(prompts, pooling_params=self.params, use_tqdm=False)
        except (ValueError, TypeError):  # vLLM refused a request before running it: bisected to the row
            raise
        except Exception as error:  # the engine itself broke; every later call would fail the same way
            raise EngineFailure(f"vLLM's engine failed: {type(error).__name__}: {error}") from error
        submitted = read(self.adapter.outputs_from_logits(
            torch.tensor([list(output.outputs.probs) for output in outputs], dtype=torch.float32)))
        by_index = dict(zip(order, submitted))
        return [by_index[i] for i in range(len(items))]

    def run(self, items: Sequence[Encoded], on_batch: Callable[[list[int]], None] | None = None) -> list[Result]:
        return in_order(len(items), self.run_batches(items), on_batch)

    def run_batches(self, items: Sequence[Encoded]) -> Iterator[dict[int, Result]]:
        yield from settle_batches(self.batch_indices, self.step, items)

    def restore_budget(self) -> bool:
        return False  # vLLM keeps its own memory budget

    @property
    def runs_on_gpu(self) -> bool:
        return not on_cpu()

    @property
    def identity(self) -> dict[str, Any]:
        import vllm

        return {"engine": f"vllm {vllm.__version__}"}

    @property
    def choices(self) -> dict[str, Any]:
        """vLLM schedules its own batches; what was asked of it is in `asked`. Its prefix cache is recorded only
        when off, so a run started before rewardmill asked for it (vLLM had it on) resumes unchanged."""
        return {"engine": "vllm", "max_num_seqs": self.asked.batch_size,
                "max_num_batched_tokens": self.asked.max_tokens_per_batch,
                **({} if self.prefix_sharing else {"prefix_sharing": False})}

    def describe(self) -> dict[str, str]:
        import vllm

        limits = ", ".join(f"{k} {v}" for k, v in (("max_num_seqs", self.asked.batch_size),
                                                   ("max_num_batched_tokens", self.asked.max_tokens_per_batch)) if v)
        return {
            "engine": f"vllm {vllm.__version__}: vLLM's pooling runner on rewardmill's token ids (chosen with "
            f"{FLAG}); raw logits of the head at each row's last token",
            "device": "chosen by vLLM (" + ("CPU" if on_cpu() else "GPU") + ")",
            "batching": "vLLM's scheduler packs rows without padding" + (f" ({limits})" if limits else ""),
            "prefix sharing": self.describe_sharing(),
        }

    def describe_sharing(self) -> str:
        if self.prefix_sharing:
            return (f"vLLM's automatic prefix caching (whole KV blocks of {self.block_size} tokens), rows ordered by "
                    "token ids so a prompt's continuations are adjacent")
        if self.asked.prefix_sharing is False:
            return "off (--no-prefix-sharing)"
        if "enable_prefix_caching" in self.asked.vllm_options:
            return "off (--vllm-option enable_prefix_caching=false)"
        return "off: vLLM does not cache prefixes for this model"
