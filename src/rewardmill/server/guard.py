"""The middleware in front of every route: the API key, the body size limit, request counts and latencies."""

from __future__ import annotations

import hmac
import time

from fastapi.responses import JSONResponse

from .errors import error_response
from .metrics import Metrics
from .options import ServerOptions

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
