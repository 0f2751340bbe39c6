"""The reward server: OpenRLHF's, vLLM's and rewardmill's own routes over one reward model and one micro-batcher.

Every route turns its body into encoded inputs (on a thread pool: tokenizing is CPU work), submits them to the
`MicroBatcher`, and waits for exactly its own results while watching for the client to go away (then its queued
work is dropped). Bad input is a 422 naming the item, a full queue a fast 503 with Retry-After, a body over the
limit 413, a model failure a 500 for the requests whose rows failed; other requests are unaffected. Request bodies
are never logged. Timing headers follow text-embeddings-inference (milliseconds).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ..adapters.base import Encoded
from ..errors import RowError
from ..model import RewardModel
from ..rows import Columns, Shape
from ..scorer import Failure
from .batcher import MicroBatcher, Overloaded, Work
from .metrics import Metrics
from .protocols import ClassifyRequest, RewardRequest, RewardsRequest, ScoreRequest, activate, listing


@dataclass(frozen=True)
class ServerOptions:
    max_delay: float = 0.002  # seconds an idle model waits for a first request's company
    max_queue: int = 4096  # inputs waiting; past it, 503
    max_body_bytes: int = 32 * 1024 * 1024
    api_key: str | None = None  # every route but /health needs `Authorization: Bearer <key>`
    retry_after: int = 1  # seconds, in a 503's Retry-After


class HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers


def error_response(status: int, message: str, kind: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """vLLM's (and OpenAI's) error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status,
                        headers=headers)


class ClientGone(Exception):
    pass


class RewardService:
    """The model, its batcher and the pools; what the routes call."""

    def __init__(self, model: RewardModel, options: ServerOptions, metrics: Metrics):
        self.model = model
        self.options = options
        self.metrics = metrics
        engine = model.engine
        self.batcher = MicroBatcher(engine.run_batches, max_delay=options.max_delay, max_queue=options.max_queue,
                                    max_rows=4 * engine.options.batch_size, on_formed=metrics.formed_rows.observe,
                                    on_batch=metrics.batch_rows.observe)
        self.encoders = ThreadPoolExecutor(4, thread_name_prefix="rewardmill-encode")
        self.row_threads = ThreadPoolExecutor(64, thread_name_prefix="rewardmill-rows")
        labels = [n for n in model.output_names if n.startswith(("logit_", "prob_"))]
        self.label_outputs = labels or ["score"]
        config = getattr(model.adapter.model, "config", None)
        id2label = getattr(config, "id2label", None) or {}
        self.label_names = [n.split("_", 1)[1] for n in labels] or [str(id2label.get(0, "LABEL_0"))]

    async def encode(self, make: Sequence[Any], param: str) -> list[Encoded]:
        """Encode inputs on the pool; a RowError becomes a 422 naming the input."""
        loop = asyncio.get_running_loop()

        def encode_all() -> list[Encoded]:
            out = []
            for i, thunk in enumerate(make):
                try:
                    out.append(thunk())
                except RowError as error:
                    raise HTTPError(422, f"{param}[{i}]: {error.reason}", param=param) from None
            return out

        return await loop.run_in_executor(self.encoders, encode_all)

    async def run(self, request: Request, encoded: list[Encoded], param: str) -> tuple[list[dict], list[Work]]:
        """The outputs of `encoded`, in order; 503 when the queue is full, 500 naming a row the model failed on."""
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
        outputs = results.result()
        for i, output in enumerate(outputs):
            if isinstance(output, Failure):
                raise HTTPError(500, f"{param}[{i}]: {output}", "InternalServerError", param=param)
        return [self.model.normalized(output) for output in outputs], works

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
        served.engine = _BatcherEngine(self.batcher, loop, self.model.engine)
        return served


class _BatcherEngine:
    """Stands in for `Engine.run` on a worker thread: submits to the batcher on the loop and waits. What it says
    of itself (identity, GPU) is the served engine's."""

    def __init__(self, batcher: MicroBatcher, loop: asyncio.AbstractEventLoop, engine):
        self.batcher, self.loop = batcher, loop
        self.identity, self.runs_on_gpu = engine.identity, engine.runs_on_gpu

    def run(self, items: Sequence[Encoded], on_batch=None) -> list:
        if not items:
            return []

        async def submit_and_wait():
            return await asyncio.gather(*(w.future for w in self.batcher.submit(items)))

        return asyncio.run_coroutine_threadsafe(submit_and_wait(), self.loop).result()


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone away (the body is read by then, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _timing(works: list[Work], started: float, tokenized: float, tokens: int, characters: int) -> dict[str, str]:
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


def create_app(model: RewardModel, options: ServerOptions = ServerOptions()) -> FastAPI:
    metrics = Metrics()
    service = RewardService(model, options, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()
            service.encoders.shutdown(wait=False)
            service.row_threads.shutdown(wait=False)

    app = FastAPI(title="rewardmill reward server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    app.add_middleware(Guard, options=options, metrics=metrics, depth=lambda: service.batcher.depth)

    @app.exception_handler(HTTPError)
    async def http_error(request: Request, error: HTTPError):
        return error_response(error.status, error.message, error.kind, error.param, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid body"}
        where = _location(first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg')}" if where else str(first.get("msg")),
                              "BadRequestError", where or None)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone):
        return Response(status_code=499)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model.name, "object": "model", "created": int(time.time()),
                                            "owned_by": "rewardmill", "root": model.name,
                                            "max_model_len": model.adapter.max_length}]}

    @app.get("/metrics")
    async def metrics_route():
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/get_reward")
    async def get_reward(request: Request, body: RewardRequest):
        started = time.perf_counter()
        encode = model.adapter.encode_text
        encoded = await service.encode([lambda q=q: encode(q, False) for q in body.query], "query")
        tokenized = time.perf_counter()
        outputs, works = await service.run(request, encoded, "query") if encoded else ([], [])
        rewards = [float(o["score"]) for o in outputs]
        extra = {name: [float(o[name]) for o in outputs] for name in model.output_names if name != "score"}
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": extra},
                            headers=_timing(works, started, tokenized, sum(map(len, encoded)),
                                            sum(map(len, body.query))))

    async def pooled(request: Request, body: ClassifyRequest, kind: str):
        started = time.perf_counter()
        adapter = model.adapter
        if body.messages is not None:
            if body.input is not None:
                raise HTTPError(422, "give input or messages, not both", param="messages")
            thunks = [lambda: adapter.encode(body.messages)]
            param, characters = "messages", sum(len(str(m.get("content", ""))) for m in body.messages)
        else:
            inputs = body.input
            if inputs is None or inputs == []:
                raise HTTPError(422, "You must pass at least one prompt", param="input")
            if isinstance(inputs, str) or (isinstance(inputs, list) and isinstance(inputs[0], int)):
                inputs = [inputs]
            special = True if body.add_special_tokens is None else body.add_special_tokens
            thunks = [(lambda x=x: adapter.encode_ids(x)) if isinstance(x, list) else
                      (lambda x=x: adapter.encode_text(x, special)) for x in inputs]
            param, characters = "input", sum(len(x) for x in inputs if isinstance(x, str))
        encoded = await service.encode(thunks, param)
        if body.truncate_prompt_tokens not in (None, -1):
            keep = body.truncate_prompt_tokens
            encoded = [Encoded(e.input_ids[-keep:]) if keep and len(e) > keep else e for e in encoded]
        tokenized = time.perf_counter()
        outputs, works = await service.run(request, encoded, param)
        activated = body.activated()
        data = []
        for index, output in enumerate(outputs):
            probs, label = service.labels(output, activated)
            data.append({"index": index, "label": label, "probs": probs, "num_classes": len(probs)} if kind == "classify"
                        else {"index": index, "object": "pooling", "data": probs})
        body_out = listing("classify" if kind == "classify" else "pool", body.model or model.name, data,
                           sum(map(len, encoded)))
        return JSONResponse(body_out, headers=_timing(works, started, tokenized, sum(map(len, encoded)), characters))

    @app.post("/classify")
    async def classify(request: Request, body: ClassifyRequest):
        return await pooled(request, body, "classify")

    @app.post("/pooling")
    async def pooling(request: Request, body: ClassifyRequest):
        return await pooled(request, body, "pooling")

    async def score_pairs(request: Request, body: ScoreRequest):
        started = time.perf_counter()
        try:
            pairs = body.pairs()
        except ValueError as error:
            raise HTTPError(422, str(error)) from None
        adapter = model.adapter
        thunks = [lambda q=q, d=d: adapter.encode([{"role": "user", "content": q}, {"role": "assistant", "content": d}])
                  for q, d in pairs]
        encoded = await service.encode(thunks, "pair")
        tokenized = time.perf_counter()
        outputs, works = await service.run(request, encoded, "pair")
        activated = body.activated()
        data = [{"index": i, "object": "score", "score": service.labels(o, activated)[0][0]} for i, o in enumerate(outputs)]
        return JSONResponse(listing("score", body.model or model.name, data, sum(map(len, encoded))),
                            headers=_timing(works, started, tokenized, sum(map(len, encoded)),
                                            sum(len(q) + len(d) for q, d in pairs)))

    app.post("/score")(score_pairs)
    app.post("/v1/score")(score_pairs)

    @app.post("/v1/rewards")
    async def rewards(request: Request, body: RewardsRequest):
        from ..row_scoring import RowOptions, score_rows

        try:
            columns = Columns(**(body.columns or {}))
            shape = Shape(body.shape) if body.shape else None
        except (TypeError, ValueError) as error:
            raise HTTPError(422, f"columns or shape: {error}") from None
        loop = asyncio.get_running_loop()
        scorer = service.rows_scorer(loop)
        options = RowOptions(columns=columns, shape=shape, chunk_rows=max(1, len(body.rows)))
        try:
            rows = await loop.run_in_executor(service.row_threads, lambda: list(score_rows(scorer, body.rows, options)))
        except Overloaded as error:
            raise service.busy(error) from None
        except RowError as error:
            raise HTTPError(422, error.reason, param="rows") from None
        return {"model": model.name, "results": rows}

    return app


ROUTES = {"/get_reward", "/classify", "/pooling", "/score", "/v1/score", "/v1/rewards", "/health", "/v1/models",
          "/metrics"}


class Guard:
    """Pure ASGI middleware in front of every route: the API key (all routes but /health), the body size limit
    (413, by Content-Length, or counted when the body comes chunked), and request counts and latencies."""

    def __init__(self, app, options: ServerOptions, metrics: Metrics, depth):
        self.app, self.options, self.metrics, self.depth = app, options, metrics, depth
        self.expected = f"Bearer {options.api_key}".encode() if options.api_key is not None else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        route = scope["path"] if scope["path"] in ROUTES else "other"
        headers = dict(scope["headers"])
        if scope["method"] == "POST" and b"content-type" not in headers:  # curl -d, plain clients: JSON anyway
            scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
        status = 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(route, headers)
            if refusal is None and b"content-length" not in headers and scope["method"] == "POST":
                receive, refusal = await self._buffered(receive)
            if refusal is not None:
                return await refusal(scope, receive, sending)
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.queue_depth.set(self.depth())

    def _refusal(self, route: str, headers: dict) -> JSONResponse | None:
        if self.expected is not None and route != "/health":
            if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                return error_response(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                                      "AuthenticationError")
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.options.max_body_bytes:
            return self._too_large(int(length))
        return None

    def _too_large(self, size: int) -> JSONResponse:
        return error_response(413, f"the body has {size} bytes or more; this server takes at most "
                                   f"{self.options.max_body_bytes}", "RequestTooLarge")

    async def _buffered(self, receive):
        """A chunked body read whole under the limit, and a receive that replays it."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive, None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.options.max_body_bytes:
                return receive, self._too_large(size)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None


def _location(loc: Sequence[Any]) -> str:
    """('body', 'input', 3) -> 'input[3]'."""
    parts = [p for p in loc if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
