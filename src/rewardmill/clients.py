"""Client glue for trainers that ask a `rewardmill serve` server for rewards.

- TRL (`GRPOTrainer(reward_funcs=[trl_reward_func(url)])`): an async reward function. TRL runs async reward
  functions concurrently on its own event loop; prompts and completions may be conversational (lists of
  messages) or plain text. A row the server could not score gets None, which TRL treats as "no reward here".
- verl (`custom_reward_function.path=<this file>`, `.name=compute_score`): `compute_score(data_source,
  solution_str, ground_truth, extra_info)`, with the server's URL in `REWARDMILL_URL`.
- OpenRLHF needs no glue: point `--reward.remote_url` (older: `--remote_rm_url`) at `http://HOST:PORT/get_reward`.

Every call retries with exponential backoff and jitter on 429, 503 (honouring Retry-After), other 5xx answers,
timeouts and connection errors; a 4xx is the caller's mistake and raises at once with the server's message.
The API key is read from an environment variable and never appears in an error.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class RewardServerError(RuntimeError):
    pass


class RewardClient:
    """Rows -> the server's `/v1/rewards` results, sync or async, with retries."""

    def __init__(self, url: str = DEFAULT_URL, *, api_key_env: str | None = None, timeout: float = 120.0,
                 retries: int = 6, backoff: float = 0.5, transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None):
        self.url = url.rstrip("/")
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise RewardServerError(f"{api_key_env} is not set (it should hold the reward server's API key)")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.transport, self.async_transport = transport, async_transport
        self._sync: httpx.Client | None = None
        self._async: dict[int, httpx.AsyncClient] = {}  # one per event loop: a client is bound to its loop

    def rewards(self, rows: Sequence[dict]) -> list[dict]:
        if self._sync is None:
            self._sync = httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout,
                                      transport=self.transport)
        for attempt in range(self.retries + 1):
            response, problem = None, None
            try:
                response = self._sync.post("/v1/rewards", json={"rows": list(rows)})
            except httpx.TransportError as error:
                problem = error
            wait = self._retry_after(response, attempt, problem)
            if wait is None:
                return response.json()["results"]
            time.sleep(wait)
        raise AssertionError("unreachable")

    async def arewards(self, rows: Sequence[dict]) -> list[dict]:
        loop = id(asyncio.get_running_loop())
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = httpx.AsyncClient(base_url=self.url, headers=self.headers,
                                                           timeout=self.timeout, transport=self.async_transport)
        for attempt in range(self.retries + 1):
            response, problem = None, None
            try:
                response = await client.post("/v1/rewards", json={"rows": list(rows)})
            except httpx.TransportError as error:
                problem = error
            wait = self._retry_after(response, attempt, problem)
            if wait is None:
                return response.json()["results"]
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _retry_after(self, response: httpx.Response | None, attempt: int, problem: Exception | None) -> float | None:
        """None when `response` is the answer; else seconds to wait before the next try (or raise: no more)."""
        if response is not None and response.status_code < 400:
            return None
        transient = response is None or response.status_code == 429 or response.status_code >= 500
        what = f"{type(problem).__name__}: {problem}" if response is None else _message(response)
        if not transient:
            raise RewardServerError(f"the reward server at {self.url} refused the request: {what}")
        if attempt >= self.retries:
            raise RewardServerError(f"the reward server at {self.url} failed {attempt + 1} times; last: {what}")
        wait = self.backoff * 2 ** attempt * (0.5 + random.random())
        given = response.headers.get("retry-after", "") if response is not None else ""
        return max(wait, float(given)) if given.replace(".", "", 1).isdigit() else wait


def _message(response: httpx.Response) -> str:
    try:
        return f"{response.status_code} {response.json()['error']['message']}"
    except Exception:
        return f"{response.status_code} {response.text[:200]}"


def _row(prompt: Any, completion: Any) -> dict:
    """TRL's (prompt, completion): conversational (lists of messages) or plain text."""
    if isinstance(prompt, list):
        completion = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        return {"conversation": [*prompt, *completion]}
    return {"instruction": prompt, "response": completion}


def trl_reward_func(url: str = DEFAULT_URL, *, api_key_env: str | None = None, **client_options: Any) -> Callable:
    """An async reward function for TRL's GRPOTrainer (and RLOOTrainer) `reward_funcs`."""
    client = RewardClient(url, api_key_env=api_key_env, **client_options)

    async def rewardmill(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        results = await client.arewards([_row(p, c) for p, c in zip(prompts, completions)])
        return [r.get("score") if r.get("error") is None else None for r in results]

    return rewardmill


_VERL_CLIENT: RewardClient | None = None


def _verl_client() -> RewardClient:
    global _VERL_CLIENT
    if _VERL_CLIENT is None:
        _VERL_CLIENT = RewardClient(os.environ.get("REWARDMILL_URL", DEFAULT_URL),
                                    api_key_env=os.environ.get("REWARDMILL_API_KEY_ENV"))
    return _VERL_CLIENT


def _verl_row(solution_str: str, extra_info: dict | None) -> dict:
    extra = extra_info or {}
    prompt = extra.get("prompt", extra.get("question"))
    if prompt is None:
        raise RewardServerError("compute_score needs the prompt: put it in the dataset's extra_info as 'prompt' "
                                "(a string or a list of messages) or 'question'")
    return _row(prompt, solution_str)


def _verl_score(result: dict) -> float:
    if result.get("error") is not None:
        raise RewardServerError(f"the reward server could not score this response: {result['error']}")
    return float(result["score"])


def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                  extra_info: dict | None = None, **kwargs: Any) -> float:
    """verl's custom reward function: the reward of `solution_str` as an answer to `extra_info['prompt']`."""
    return _verl_score(_verl_client().rewards([_verl_row(solution_str, extra_info)])[0])


async def compute_score_async(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                              extra_info: dict | None = None, **kwargs: Any) -> float:
    """The same as `compute_score`, for verl's reward loop, which awaits async reward functions."""
    return _verl_score((await _verl_client().arewards([_verl_row(solution_str, extra_info)]))[0])
