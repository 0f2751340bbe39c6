"""The served engine as the server runs it: behind the one batcher's queue, and recovering its token budget.

`BatcherEngine` is the engine interface for callers that score on a worker thread (the row layer of
`/v1/rewards`): what it runs goes through the batcher's queue with every other request. `BudgetRecovery` is what
the batcher runs on the model thread: the served engine's batches, and after a batch ran out of memory (which
lowers the engine's token budget), the configured budget given back step by step once batches run well again,
so one huge request does not slow every later one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..reward_models.adapters.base import Encoded
from ..reward_models.engines.protocol import Output, Result, RewardEngine
from ..reward_models.engines.running import in_order
from ..reward_models.options import EngineOptions
from .batcher import MicroBatcher

logger = logging.getLogger("rewardmill.server")

RESTORE_AFTER_BATCHES = 16  # batches in a row that run without lowering the budget, per step back up


class BudgetRecovery:
    """The batcher's runner: the served engine's `run_batches`, with one `restore_budget` step after every
    `after` batches in a row that did not lower the token budget. Runs on the model thread only."""

    def __init__(self, engine: RewardEngine, after: int = RESTORE_AFTER_BATCHES):
        self.engine = engine
        self.after = after
        self.streak = 0
        self.budget = engine.options.max_tokens_per_batch

    def __call__(self, items: Sequence[Encoded]) -> Iterator[dict[int, Result]]:
        for settled in self.engine.run_batches(items):
            budget = self.engine.options.max_tokens_per_batch
            self.streak = 0 if budget < self.budget else self.streak + 1
            if self.streak >= self.after and self.engine.restore_budget():
                self.streak = 0
                logger.info("no batch ran out of memory in the last %d: batches may hold %d tokens again",
                            self.after, self.engine.options.max_tokens_per_batch)
            self.budget = self.engine.options.max_tokens_per_batch
            yield settled


class BatcherEngine(RewardEngine):
    """The served engine behind the batcher, for a worker thread: `run` submits to the batcher on the event loop
    and waits, and the batcher forms the batches. What it says of itself is the served engine's."""

    def __init__(self, batcher: MicroBatcher, loop: asyncio.AbstractEventLoop, engine: RewardEngine):
        self.batcher, self.loop, self.served = batcher, loop, engine
        self.capabilities = engine.capabilities
        self.adapter = engine.adapter

    @property
    def options(self) -> EngineOptions:
        return self.served.options

    @property
    def runs_on_gpu(self) -> bool:
        return self.served.runs_on_gpu

    @property
    def identity(self) -> dict[str, Any]:
        return self.served.identity

    @property
    def choices(self) -> dict[str, Any]:
        return self.served.choices

    def describe(self) -> dict[str, str]:
        return self.served.describe()

    def batch_indices(self, items: Sequence[Encoded]) -> list[list[int]]:
        return [list(range(len(items)))] if items else []  # one submission; the batcher forms the batches

    def step(self, items: Sequence[Encoded]) -> list[Output]:
        results = self.run(items)
        failed = next((r for r in results if not isinstance(r, dict)), None)
        if failed is not None:
            raise RuntimeError(str(failed))
        return results  # type: ignore[return-value]

    def run(self, items: Sequence[Encoded], on_batch: Callable[[list[int]], None] | None = None) -> list[Result]:
        return in_order(len(items), self.run_batches(items), on_batch)

    def run_batches(self, items: Sequence[Encoded]) -> Iterator[dict[int, Result]]:
        if not items:
            return

        async def submit_and_wait():
            return await asyncio.gather(*(w.future for w in self.batcher.submit(items)))

        yield dict(enumerate(asyncio.run_coroutine_threadsafe(submit_and_wait(), self.loop).result()))

    def restore_budget(self) -> bool:
        return False  # the batcher's `BudgetRecovery` restores the served engine's budget on the model thread
