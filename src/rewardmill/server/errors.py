"""Error answers of every route, in vLLM's (and OpenAI's) error body: raised `HTTPError`s, bodies that do not
validate or parse (422 naming where), and a client that went away (499, which no one reads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response


class HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers


class ClientGone(Exception):
    pass


def error_response(status: int, message: str, kind: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """vLLM's (and OpenAI's) error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
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
