"""The reward server: OpenRLHF's, vLLM's and rewardmill's own routes over one reward model and one micro-batcher.

Every route turns its body into encoded inputs (on a thread pool: tokenizing is CPU work), submits them to the
`MicroBatcher`, and waits for exactly its own results while watching for the client to go away (then its queued
work is dropped). Admission comes first, before any tokenizing: a request with more inputs than the queue can
ever hold is a 413, one that does not fit now a fast 503 with Retry-After. Bad input is a 422 naming the item, a
body over the limit 413, a model failure a 500 for the requests whose rows failed; other requests are unaffected.
An input over the maximum length is truncated, counted and logged (`over_long="truncate"`, the default), or a 422
naming it (`"error"`). Request bodies are never logged. Timing headers follow text-embeddings-inference (ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ..errors import OptionsError, RowError
from ..reward_models.adapters.base import Adapter, Encoded
from ..reward_models.model import RewardModel
from ..rows.shapes import Columns, Shape
from ..scorer import Failure
from .batcher import MicroBatcher, Overloaded, TooLarge, Work
from .metrics import Metrics
from .protocols import ClassifyRequest, RewardRequest, RewardsRequest, ScoreRequest, activate, listing


@dataclass(frozen=True)
class ServerOptions:
    max_delay: float = 0.002  # seconds an idle model waits for a first request's company
    max_queue: int = 4096  # inputs waiting; past it, 503
    max_body_bytes: int = 32 * 1024 * 1024
    api_key: str | None = None  # every route but /health needs `Authorization: Bearer <key>`
    retry_after: int = 1  # seconds, in a 503's Retry-After
    # an input over the maximum length: "truncate" keeps its end (or the side --truncation names), "error" is a 422
    over_long: Literal["truncate", "error"] = "truncate"

    def __post_init__(self) -> None:
        if self.over_long not in ("truncate", "error"):
            raise OptionsError(f"over_long must be truncate or error, got {self.over_long!r}")


logger = logging.getLogger("rewardmill.server")


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


def _finite(output: dict) -> dict | Failure:
    """The output, or a `Failure` naming its first NaN or infinite value (fp16 overflow, a broken head): JSON has
    no NaN, and a reward of NaN would poison a trainer's step."""
    for name, value in output.items():
        if isinstance(value, float) and not math.isfinite(value):
            return Failure(f"the model gave a non-finite {name} ({value})")
    return output


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
        if first.get("type") == "json_invalid":
            return error_response(422, _json_problem(first, error.body), "BadRequestError")
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
        with service.admitted(len(body.query)) as release:
            encoded = await service.encode([lambda a, q=q: a.encode_text(q, False) for q in body.query], "query")
            tokenized = time.perf_counter()
            outputs, works = await service.run(request, encoded, "query", release) if encoded else ([], [])
        rewards = [float(o["score"]) for o in outputs]
        extra = {name: [float(o[name]) for o in outputs] for name in model.output_names if name != "score"}
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": extra},
                            headers=_timing(works, started, tokenized, sum(map(len, encoded)),
                                            sum(map(len, body.query))))

    async def pooled(request: Request, body: ClassifyRequest, kind: str):
        started = time.perf_counter()
        if body.messages is not None:
            if body.input is not None:
                raise HTTPError(422, "give input or messages, not both", param="messages")
            thunks = [lambda a: a.encode(body.messages)]
            param, characters = "messages", sum(len(str(m.get("content", ""))) for m in body.messages)
        else:
            inputs = body.input
            if inputs is None or inputs == []:
                raise HTTPError(422, "You must pass at least one prompt", param="input")
            if isinstance(inputs, str) or (isinstance(inputs, list) and isinstance(inputs[0], int)):
                inputs = [inputs]
            special = True if body.add_special_tokens is None else body.add_special_tokens
            thunks = [(lambda a, x=x: a.encode_ids(x)) if isinstance(x, list) else
                      (lambda a, x=x: a.encode_text(x, special)) for x in inputs]
            param, characters = "input", sum(len(x) for x in inputs if isinstance(x, str))
        with service.admitted(len(thunks)) as release:
            encoded = await service.encode(thunks, param)
            if body.truncate_prompt_tokens not in (None, -1):
                keep = body.truncate_prompt_tokens
                encoded = [Encoded(e.input_ids[-keep:]) if keep and len(e) > keep else e for e in encoded]
            tokenized = time.perf_counter()
            outputs, works = await service.run(request, encoded, param, release)
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
        thunks = [lambda a, q=q, d=d: a.encode([{"role": "user", "content": q}, {"role": "assistant", "content": d}])
                  for q, d in pairs]
        with service.admitted(len(thunks)) as release:
            encoded = await service.encode(thunks, "pair")
            tokenized = time.perf_counter()
            outputs, works = await service.run(request, encoded, "pair", release)
        activated = body.activated()
        data = [{"index": i, "object": "score", "score": service.labels(o, activated)[0][0]} for i, o in enumerate(outputs)]
        return JSONResponse(listing("score", body.model or model.name, data, sum(map(len, encoded))),
                            headers=_timing(works, started, tokenized, sum(map(len, encoded)),
                                            sum(len(q) + len(d) for q, d in pairs)))

    app.post("/score")(score_pairs)
    app.post("/v1/score")(score_pairs)

    @app.post("/v1/rewards")
    async def rewards(request: Request, body: RewardsRequest):
        if (body.rows is None) == (body.inputs is None):
            raise HTTPError(422, "give rows (in any shape rewardmill score reads) or inputs (text or messages), "
                                 "one of the two")
        if body.inputs is not None:
            return {"model": model.name, "results": await scored_inputs(request, body.inputs)}
        return {"model": model.name, "results": await scored_rows(body)}

    async def scored_inputs(request: Request, inputs: list[Any]) -> list[dict]:
        """Each input scored as it is (text as rendered text, messages through the chat template), each with its
        own error: a bad input or a model failure never fails the others."""
        with service.admitted(len(inputs)) as release:
            prepared = await service.encode([_input_thunk(x) for x in inputs], "inputs", per_item=True)
            ready = [i for i, p in enumerate(prepared) if isinstance(p, Encoded)]
            outputs, _ = await service.outputs(request, [prepared[i] for i in ready], release) if ready else ([], [])
        results: list[dict] = [{"score": None, "error": p} for p in prepared]
        for i, output in zip(ready, outputs):
            results[i] = ({"score": None, "error": f"inputs[{i}]: {output}"} if isinstance(output, Failure)
                          else {**{k: float(v) for k, v in output.items()}, "error": None})
        return results

    async def scored_rows(body: RewardsRequest) -> list[dict]:
        from ..rows.scoring import RowOptions, score_rows

        try:
            columns = Columns(**(body.columns or {}))
            shape = Shape(body.shape) if body.shape else None
        except (TypeError, ValueError) as error:
            raise HTTPError(422, f"columns or shape: {error}") from None
        service.admit(len(body.rows), hold=False)  # at least one input per row: refused before any tokenizing
        loop = asyncio.get_running_loop()
        scorer = service.rows_scorer(loop)
        options = RowOptions(columns=columns, shape=shape, chunk_rows=max(1, len(body.rows)))
        try:
            return await loop.run_in_executor(service.row_threads, lambda: list(score_rows(scorer, body.rows, options)))
        except Overloaded as error:
            raise service.busy(error) from None
        except TooLarge as error:
            raise HTTPError(413, str(error), "RequestTooLarge") from None
        except RowError as error:
            raise HTTPError(422, error.reason, param="rows") from None

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


def _json_problem(error: dict, body: Any) -> str:
    """A body that does not parse: the parser's message and where (line, column, character)."""
    position = next((p for p in error.get("loc", ()) if isinstance(p, int)), None)
    reason = (error.get("ctx") or {}).get("error") or error.get("msg") or "invalid JSON"
    if position is None:
        return f"the body is not valid JSON: {reason}"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body if isinstance(body, str) else ""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"the body is not valid JSON: {reason} at line {line} column {column} (character {position})"


def _input_thunk(value: Any) -> Callable[[Adapter], Encoded]:
    """How one `/v1/rewards` input is encoded: {"text": ...} as rendered text (no special tokens added, as TRL
    tokenizes a reward model's text), {"messages": [...]} with the chat template."""

    def encode(adapter: Adapter) -> Encoded:
        if not isinstance(value, dict) or ("text" in value) == ("messages" in value):
            raise RowError('give {"text": "..."} or {"messages": [...]}')
        if "text" in value:
            if not isinstance(value["text"], str):
                raise RowError(f"text must be a string, got {type(value['text']).__name__}")
            return adapter.encode_text(value["text"], False)
        messages = value["messages"]
        _check_messages(messages)
        tools = _tool_message(messages)
        if tools is not None and not _renders_tool_calls(adapter):
            raise RowError(f"messages[{tools}] is part of a tool call, and the model's chat template does not render "
                           "tool calls (it never mentions tool_calls); give a template that does with --chat-template")
        return adapter.encode(messages)

    return encode


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise RowError("messages must be a non-empty list of {role, content} objects")
    for j, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RowError(f"messages[{j}] must be an object with a role")
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            raise RowError(f"messages[{j}] has no content and no tool_calls")
        if content is not None and not isinstance(content, (str, list)):
            raise RowError(f"messages[{j}] content must be a string or a list of parts")


def _tool_message(messages: list[dict]) -> int | None:
    """The index of the first message that belongs to a tool call (an assistant's tool_calls, a tool's answer)."""
    return next((j for j, m in enumerate(messages) if m.get("tool_calls") or m.get("role") in ("tool", "ipython")),
                None)


def _renders_tool_calls(adapter: Adapter) -> bool:
    """Whether the adapter renders conversations with a chat template that handles tool calls. Templates that do
    (Llama 3.1, Qwen 2.5, Hermes, Mistral) all read `tool_calls`; one that does not would print None or drop them."""
    chat = getattr(adapter, "chat", None)
    if chat is None:
        return False
    template = chat.chat_template or getattr(chat.tokenizer, "chat_template", None)
    templates = template.values() if isinstance(template, dict) else [template]
    return any(isinstance(t, str) and "tool_calls" in t for t in templates)
