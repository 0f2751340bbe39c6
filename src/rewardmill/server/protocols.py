"""Request bodies of the routes, as their clients send them, and vLLM's response bodies.

- OpenRLHF `/get_reward`: `{"query": [...], "prompts": [...], "labels": [...]}` -> `{"rewards", "scores",
  "extra_logs"}`; the query is fully rendered text (openrlhf/cli/serve_rm.py, openrlhf/utils/agent.py).
- vLLM `/classify`, `/pooling`, `/score` (vllm/entrypoints/pooling/): unknown fields are accepted and ignored, as
  vLLM does; both `use_activation` and the legacy `activation` are honoured (vLLM 0.32 ignores the latter).
- rewardmill's `/v1/rewards`: rows in any shape `rewardmill score` reads, or `inputs` (rendered text or messages,
  tool calls included) scored as they are, each with its own error: what the TRL reward function sends.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field

Conversation = list[dict[str, Any]]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RewardRequest(_Open):
    query: list[str]
    prompts: list[Any] | None = None
    labels: list[Any] | None = None


class _Activation(_Open):
    model: str | None = None
    use_activation: bool | None = None
    activation: bool | None = None  # vLLM's legacy name, still sent by older verl
    truncate_prompt_tokens: int | None = Field(default=None, ge=-1)

    def activated(self) -> bool:
        chosen = self.use_activation if self.use_activation is not None else self.activation
        return True if chosen is None else chosen


class ClassifyRequest(_Activation):
    input: Union[str, list[str], list[int], list[list[int]], None] = None  # noqa: UP007 (pydantic tries in order)
    messages: list[dict[str, Any]] | None = None
    add_special_tokens: bool | None = None


class ScoreRequest(_Activation):
    text_1: Union[str, list[str], None] = None  # noqa: UP007
    text_2: Union[str, list[str], None] = None  # noqa: UP007
    queries: Union[str, list[str], None] = None  # noqa: UP007
    documents: Union[str, list[str], None] = None  # noqa: UP007
    data_1: Union[str, list[str], None] = None  # noqa: UP007
    data_2: Union[str, list[str], None] = None  # noqa: UP007

    def pairs(self) -> list[tuple[str, str]]:
        """(query, document) pairs: one query against each document, or lists of equal length zipped."""
        for first, second in (("text_1", "text_2"), ("queries", "documents"), ("data_1", "data_2")):
            left, right = getattr(self, first), getattr(self, second)
            if left is None and right is None:
                continue
            if left is None or right is None:
                raise ValueError(f"{first} and {second} go together")
            lefts = [left] if isinstance(left, str) else left
            rights = [right] if isinstance(right, str) else right
            if len(lefts) == 1:
                lefts = lefts * len(rights)
            if len(lefts) != len(rights):
                raise ValueError(f"{first} has {len(lefts)} texts and {second} {len(rights)}: give one {first}, "
                                 "or as many as there are in " + second)
            if not rights:
                raise ValueError(f"{second} is empty")
            return list(zip(lefts, rights))
        raise ValueError("give text_1 and text_2 (or queries and documents)")


class RewardsRequest(_Open):
    rows: list[Any] | None = None
    inputs: list[Any] | None = None  # {"text": rendered text} or {"messages": [...]}, each scored as it is
    columns: dict[str, str] | None = None  # input and output column names, as `rewardmill score` takes them
    shape: str | None = None


def activate(values: list[float]) -> list[float]:
    """vLLM's default activation of classifier logits: sigmoid for one label, softmax for several."""
    if len(values) == 1:
        x = values[0]
        return [1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def usage(tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0, "prompt_tokens_details": None}


def listing(prefix: str, model: str, data: list[dict], tokens: int) -> dict[str, Any]:
    """vLLM's response envelope: id, object "list", created, model, data, usage."""
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": data, "usage": usage(tokens)}
