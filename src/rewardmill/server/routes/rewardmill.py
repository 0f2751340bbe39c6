"""rewardmill's own `/v1/rewards`: rows in any shape `rewardmill score` reads, or `inputs` (rendered text or
messages, tool calls included) scored as they are, each with its own error (what TRL's reward function sends)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from ...errors import RowError
from ...reward_models.adapters.base import Adapter, Encoded
from ...rows.shapes import Columns, Shape
from ...scorer import Failure
from ..batcher import Overloaded, TooLarge
from ..errors import HTTPError
from ..protocols import RewardsRequest
from ..service import RewardService


def router(service: RewardService) -> APIRouter:
    routes = APIRouter()
    model = service.model

    @routes.post("/v1/rewards")
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
        from ...rows.scoring import RowOptions, score_rows

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

    return routes


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
