"""One micro-batcher behind every route: requests from all clients are queued, and the queue is drained into
engine runs (length-sorted batches under the engine's token budget and row cap) on one model thread, off the
event loop. Each batch's results go back to their requests as soon as that batch is done.

When the model is idle, the first arrival waits `max_delay` (about 2 ms) for company; while the model is busy,
arrivals queue up and form the next run. Work whose request was cancelled (the client went away) is dropped
before it runs. The queue is bounded: past `max_queue` rows, `submit` raises `Overloaded` at once, and `TooLarge`
for a submission that alone holds more.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..reward_models.adapters.base import Encoded

Runner = Callable[[Sequence[Encoded]], Iterator[dict[int, Any]]]


class Overloaded(Exception):
    """The queue is full; the caller should answer 503 with Retry-After."""


class TooLarge(Exception):
    """More inputs at once than the queue can ever hold: waiting would not help (413, never 503)."""


@dataclass
class Work:
    encoded: Encoded
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass
class QueueStats:
    """Queued inputs dropped before they ran because their request was cancelled (the service counts the same in
    Prometheus as the requests go away; this count is the batcher's own)."""

    dropped: int = 0


class MicroBatcher:
    def __init__(self, runner: Runner, *, max_delay: float = 0.002, max_queue: int = 4096, max_rows: int = 512,
                 on_formed: Callable[[int], None] | None = None, on_batch: Callable[[int], None] | None = None):
        self.runner = runner
        self.max_delay = max_delay
        self.max_queue = max_queue
        self.max_rows = max_rows
        self.on_formed = on_formed or (lambda rows: None)
        self.on_batch = on_batch or (lambda rows: None)
        self.stats = QueueStats()
        self._queue: collections.deque[Work] = collections.deque()
        self._arrived = asyncio.Event()
        self._model = ThreadPoolExecutor(1, thread_name_prefix="rewardmill-model")
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        while self._queue:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._model.shutdown(wait=True)

    def submit(self, encoded: Sequence[Encoded]) -> list[Work]:
        """Queue inputs; one `Work` per input, whose future resolves with its result (an output dict or a
        `Failure`). Cancel the futures to drop work that has not run yet."""
        if len(encoded) > self.max_queue:
            raise TooLarge(f"{len(encoded)} inputs in one request, and the server queues at most {self.max_queue} "
                           "(--max-queue): send fewer per request")
        if len(self._queue) + len(encoded) > self.max_queue:
            raise Overloaded(f"the queue holds {len(self._queue)} inputs (at most {self.max_queue})")
        loop = asyncio.get_running_loop()
        works = [Work(e, loop.create_future()) for e in encoded]
        self._queue.extend(works)
        self._arrived.set()
        return works

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                await asyncio.sleep(self.max_delay)  # idle model: let the first arrival gather company
            works = []
            while self._queue and len(works) < self.max_rows:
                work = self._queue.popleft()
                if work.future.cancelled():
                    self.stats.dropped += 1
                    continue
                works.append(work)
            if works:
                self.on_formed(len(works))
                await loop.run_in_executor(self._model, self._run, works)

    def _run(self, works: list[Work]) -> None:
        """On the model thread: run the engine over the works, handing each batch's results back as it ends."""
        started = time.perf_counter()
        for work in works:
            work.started_at = started
        try:
            for settled in self.runner([w.encoded for w in works]):
                finished = time.perf_counter()
                for i in settled:
                    works[i].finished_at = finished
                self.on_batch(len(settled))
                self._loop.call_soon_threadsafe(self._deliver, [(works[i], result) for i, result in settled.items()])
        except Exception as error:  # the engine settles model errors per row; this is a bug, fail these requests
            self._loop.call_soon_threadsafe(self._fail, works, error)

    @staticmethod
    def _deliver(results: list[tuple[Work, Any]]) -> None:
        for work, result in results:
            if not work.future.done():
                work.future.set_result(result)

    @staticmethod
    def _fail(works: list[Work], error: Exception) -> None:
        for work in works:
            if not work.future.done():
                work.future.set_exception(error)
