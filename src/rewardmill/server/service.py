"""The reward service behind every route: one reward model, its one batcher and the pools.

Admission comes first, before any tokenizing: a request with more inputs than the queue can ever hold is a 413,
one that does not fit now a fast 503 with Retry-After. Inputs are encoded on a thread pool (tokenizing is CPU
work) with the server's over-long policy: an input over the maximum length is truncated, counted and logged
(`over_long="truncate"`, the default), or a 422 naming it (`"error"`). Encoded inputs go to the `MicroBatcher`,
and a request waits for exactly its own results while watching for its client to go away (then its queued work
is dropped). A model failure is a 500 for the requests whose rows failed; other requests are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from fastapi import Request

from ..errors import RowError
from ..reward_models.adapters.base import Adapter, Encoded
from ..reward_models.model import RewardModel
from ..scorer import Failure
from .batcher import MicroBatcher, Overloaded, Work
from .engine import BatcherEngine, BudgetRecovery
from .errors import ClientGone, HTTPError
from .metrics import Metrics
from .options import ServerOptions
from .protocols import activate

logger = logging.getLogger("rewardmill.server")


class RewardService:
    """The model, its batcher and the pools; what the routes call."""

    def __init__(self, model: RewardModel, options: ServerOptions, metrics: Metrics):
        self.model = model
        self.options = options
        self.metrics = metrics
        engine = model.engine
        self.batcher = MicroBatcher(BudgetRecovery(engine), max_delay=options.max_delay, max_queue=options.max_queue,
                                    max_rows=4 * engine.options.batch_size, on_formed=metrics.formed_rows.observe,
                                    on_batch=metrics.batch_rows.observe)
        self.pending = 0  # inputs admitted and being tokenized, not yet in the batcher's queue
        self._cuts = threading.local()  # lengths of the inputs cut while encoding one item, per encoder thread
        self.adapter = self._serving_adapter(model.adapter)
        self.encoders = ThreadPoolExecutor(4, thread_name_prefix="rewardmill-encode")
        self.row_threads = ThreadPoolExecutor(64, thread_name_prefix="rewardmill-rows")
        labels = [n for n in model.output_names if n.startswith(("logit_", "prob_"))]
        self.label_outputs = labels or ["score"]
        config = getattr(model.adapter.model, "config", None)
        id2label = getattr(config, "id2label", None) or {}
        self.label_names = [n.split("_", 1)[1] for n in labels] or [str(id2label.get(0, "LABEL_0"))]

    def _serving_adapter(self, adapter: Adapter) -> Adapter:
        """A shallow copy of the model's adapter (same model and tokenizer) with the server's over-long policy: it
        tells `_truncated` of every input it is about to cut."""
        served = copy.copy(adapter)
        if self.options.over_long == "error":
            served.truncation = "error"
        else:
            served.truncation = "left" if adapter.truncation == "error" else adapter.truncation
            served.refuse_over_length = self._truncated  # `fit` calls it with the length of each input it cuts
        return served

    def _truncated(self, length: int) -> None:
        self.metrics.truncated.inc()
        cuts = getattr(self._cuts, "lengths", None)
        if cuts is not None:
            cuts.append(length)
        else:  # encoded by the row layer (/v1/rewards rows): no item name here
            logger.warning("an input of %d tokens was truncated to %d (--truncation %s)", length,
                           self.adapter.max_length, self.adapter.truncation)

    def admit(self, count: int, hold: bool = True) -> None:
        """Refuse at once, before any tokenizing: 413 when `count` inputs can never fit in the queue, 503 when
        they do not fit now. With `hold`, admitted inputs count as waiting until released (see `admitted`)."""
        limit = self.options.max_queue
        if count > limit:
            raise HTTPError(413, f"{count} inputs in one request, and the server queues at most {limit} "
                                 "(--max-queue): send fewer per request", "RequestTooLarge")
        waiting = self.batcher.depth + self.pending
        if waiting + count > limit:
            raise self.busy(Overloaded(f"{waiting} inputs are waiting (at most {limit})"))
        self.pending += count if hold else 0

    @contextlib.contextmanager
    def admitted(self, count: int) -> Iterator[Callable[[], None]]:
        """`admit`, then yield the release (called when the inputs reach the queue; at the latest on exit)."""
        self.admit(count)
        held = count

        def release() -> None:
            nonlocal held
            self.pending -= held
            held = 0

        try:
            yield release
        finally:
            release()

    async def encode(self, make: Sequence[Callable[[Adapter], Encoded]], param: str,
                     per_item: bool = False) -> list[Encoded | str]:
        """Encode inputs on the pool with the serving adapter. A RowError is a 422 naming the input, or with
        `per_item` that input's error message in its place. Truncated inputs are logged by name."""
        loop = asyncio.get_running_loop()

        def encode_all() -> list[Encoded | str]:
            out: list[Encoded | str] = []
            cut = []
            for i, thunk in enumerate(make):
                self._cuts.lengths = []
                try:
                    out.append(thunk(self.adapter))
                except RowError as error:
                    if not per_item:
                        raise HTTPError(422, f"{param}[{i}]: {error.reason}", param=param) from None
                    out.append(f"{param}[{i}]: {error.reason}")
                finally:
                    lengths, self._cuts.lengths = self._cuts.lengths, None
                cut += [f"{param}[{i}] ({n} tokens)" for n in lengths[:1]]
            if cut:
                logger.warning("%d of %d inputs truncated to %d tokens (--truncation %s): %s", len(cut), len(make),
                               self.adapter.max_length, self.adapter.truncation, ", ".join(cut))
            return out

        return await loop.run_in_executor(self.encoders, encode_all)

    async def run(self, request: Request, encoded: list[Encoded], param: str,
                  release: Callable[[], None] = lambda: None) -> tuple[list[dict], list[Work]]:
        """The outputs of `encoded`, in order; 500 naming a row the model failed on."""
        outputs, works = await self.outputs(request, encoded, release)
        for i, output in enumerate(outputs):
            if isinstance(output, Failure):
                raise HTTPError(500, f"{param}[{i}]: {output}", "InternalServerError", param=param)
        return outputs, works

    async def outputs(self, request: Request, encoded: list[Encoded],
                      release: Callable[[], None] = lambda: None) -> tuple[list[dict | Failure], list[Work]]:
        """Each input's normalized output, or the `Failure` the model raised on it; 503 when the queue is full.
        `release` gives back the admission as the inputs enter the queue."""
        release()
        try:
            works = self.batcher.submit(encoded)
        except Overloaded as error:
            raise self.busy(error) from None
        self.metrics.queue_depth.set(self.batcher.depth)
        results = asyncio.gather(*(w.future for w in works))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not results.done():
            for work in works:
                work.future.cancel()
            results.cancel()
            self.metrics.dropped.inc(len(works))
            raise ClientGone()
        return [o if isinstance(o, Failure) else _finite(self.model.normalized(o)) for o in results.result()], works

    def busy(self, error: Overloaded) -> HTTPError:
        """The fast 503 of a full queue (counted), with Retry-After."""
        self.metrics.rejected.inc()
        return HTTPError(503, f"server busy: {error}; retry later", "ServiceUnavailableError",
                         headers={"Retry-After": str(self.options.retry_after)})

    def labels(self, output: dict, activated: bool) -> tuple[list[float], str]:
        values = [float(output[name]) for name in self.label_outputs]
        probs = activate(values) if activated else values
        return probs, self.label_names[max(range(len(values)), key=values.__getitem__)] if len(values) > 1 \
            else self.label_names[0]

    def rows_scorer(self, loop: asyncio.AbstractEventLoop) -> RewardModel:
        """The model as a `Scorer` whose engine runs go through the batcher (for the row layer, on a thread)."""
        served = copy.copy(self.model)
        served.adapter = self.adapter
        served.engine = BatcherEngine(self.batcher, loop, self.model.engine)
        return served


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone away (the body is read by then, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def timing_headers(works: list[Work], started: float, tokenized: float, tokens: int,
                   characters: int) -> dict[str, str]:
    """text-embeddings-inference's timing headers (ms)."""
    now = time.perf_counter()
    if works:
        queue = sum(w.started_at - w.queued_at for w in works) / len(works)
        inference = sum(w.finished_at - w.started_at for w in works) / len(works)
    else:
        queue = inference = 0.0
    ms = lambda seconds: str(max(0, round(seconds * 1000)))  # noqa: E731
    return {"x-compute-type": "rewardmill", "x-tokenization-time": ms(tokenized - started), "x-queue-time": ms(queue),
            "x-inference-time": ms(inference), "x-total-time": ms(now - started), "x-compute-time": ms(now - started),
            "x-compute-tokens": str(tokens), "x-compute-characters": str(characters)}


def _finite(output: dict) -> dict | Failure:
    """The output, or a `Failure` naming its first NaN or infinite value (fp16 overflow, a broken head): JSON has
    no NaN, and a reward of NaN would poison a trainer's step."""
    for name, value in output.items():
        if isinstance(value, float) and not math.isfinite(value):
            return Failure(f"the model gave a non-finite {name} ({value})")
    return output
