"""The one interface every engine implements, and the capabilities each declares.

An engine runs encoded rows through a model in batches: the transformers `Engine` (torch, batched here), the
`VllmEngine` (vLLM's pooling runner) and the reward server's `BatcherEngine` (any of the two behind the server's
queue). Callers ask an engine's declared `Capabilities` whether it can run a model (`refusal`) rather than check
model families by name; `starting.start_engine` starts the engine the options name (a `StartableEngine`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ...scorer import Failure

if TYPE_CHECKING:
    from ..adapters.base import Adapter, Encoded
    from ..adapters.registry import Detection
    from ..options import CpuOptions, EngineOptions, LoadOptions

Output = dict[str, float]  # {output name: value} of one row
Result = Output | Failure  # one row's output, or why it could not be scored


@dataclass(frozen=True)
class Capabilities:
    """What an engine can run, declared by the engine and asked by its callers before any weights load.

    `runner` names what runs the model in refusals. `kinds` are the adapter kinds it runs (None: every kind),
    `kinds_named` the same in words. `own_code`: it runs models that load with their own Python code. `packs`:
    it can put a batch's rows side by side without padding. `loads_weights`: it loads the weights itself, so the
    adapter gets the model's empty structure. `prefix_sharing`: rows that share a prefix run it once."""

    runner: str
    kinds: frozenset[str] | None = None
    kinds_named: str = "every kind"
    own_code: bool = True
    packs: bool = False
    loads_weights: bool = False
    prefix_sharing: bool = False

    def refusal(self, detection: Detection) -> str | None:
        """Why this engine cannot run the model `detection` describes, or None when it can."""
        if detection.remote_code and not self.own_code:
            return f"the model loads with its own Python code (trust_remote_code), which {self.runner} does not run"
        if self.kinds is not None and detection.kind not in self.kinds:
            return (f"it is read as a {detection.kind} model ({detection.reason}); {self.runner} scores "
                    f"{self.kinds_named} only")
        return None


class RewardEngine(Protocol):
    """Runs encoded rows through one adapter's model. `step` scores one batch as given; `run` and `run_batches`
    plan batches (`batch_indices`) and step through them, a failing batch bisected down to the row that fails."""

    capabilities: Capabilities
    adapter: Adapter
    options: EngineOptions  # the batch shapes it plans with now (defaults for the device filled in)
    runs_on_gpu: bool
    identity: dict[str, Any]  # what a score depends on in this engine besides the model
    choices: dict[str, Any]  # the batch shapes it settled on, kept in a run's manifest for `--resume`

    def describe(self) -> dict[str, str]:
        """What `rewardmill inspect` prints about the engine."""
        ...

    def batch_indices(self, items: Sequence[Encoded]) -> list[list[int]]:
        """The indices of `items` grouped into the batches this engine runs them in."""
        ...

    def step(self, items: Sequence[Encoded]) -> list[Output]:
        """Score one batch as given (no reordering); one output per item."""
        ...

    def run(self, items: Sequence[Encoded], on_batch: Callable[[list[int]], None] | None = None) -> list[Result]:
        """Score every item, in input order, a `Failure` for an item that cannot be scored even alone;
        `on_batch` gets the indices of each batch as it is done."""
        ...

    def run_batches(self, items: Sequence[Encoded]) -> Iterator[dict[int, Result]]:
        """Like `run`, one batch at a time: yields {index in `items`: result} as each batch is done."""
        ...

    def restore_budget(self) -> bool:
        """One step back toward the configured token budget after running out of memory lowered it; False when
        there is nothing to restore."""
        ...


class StartableEngine(RewardEngine, Protocol):
    """An engine a model is loaded with (`starting.start_engine`), rather than one wrapped around another."""

    @classmethod
    def start(cls, adapter: Adapter, options: EngineOptions, *, name: str, load: LoadOptions) -> RewardEngine:
        """The engine over `adapter`, ready to score (`name`, `load`: where it finds weights it loads itself)."""
        ...

    @classmethod
    def check_options(cls, load: LoadOptions, model_kwargs: Mapping[str, Any], cpu: CpuOptions,
                      options: EngineOptions) -> None:
        """An OptionsError naming the loading options this engine has no equivalent for, before anything loads."""
        ...
