"""Client glue for trainers that ask a `rewardmill serve` server for rewards.

- TRL (`GRPOTrainer(reward_funcs=[trl_reward_func(url)])`): an async reward function. TRL runs async reward
  functions concurrently on its own event loop. Each (prompt, completion) is scored the way GRPOTrainer scores it
  with a reward model given as a model (trl/trainer/grpo_trainer.py, `_calculate_rewards`): plain text as
  `prompt + completion`, tokenized with no special tokens and no chat template; conversational ones as
  `prompt + completion` messages through the chat template (tool calls included, where the template renders
  them). A completion the server could not score gets None (TRL counts it as no reward), and its reason is
  logged as a warning naming the completion.
- verl (`custom_reward_function.path=<this file>`, `.name=compute_score`): `compute_score` takes verl's one-item
  call (`data_source, solution_str, ground_truth, extra_info`, as its naive, dapo, prime reward managers and the
  reward loop call it) and its batch reward manager's call (`data_sources, solution_strs, ground_truths,
  extra_infos`: one score per item); `compute_score_async` is the same for the reward loop's managers, which await
  it. The server's URL is in `REWARDMILL_URL`.
- OpenRLHF needs no glue: point `--reward.remote_url` (older: `--remote_rm_url`) at `http://HOST:PORT/get_reward`.

Every call retries with exponential backoff and jitter on 429, 503 (honouring Retry-After), other 5xx answers,
timeouts and connection errors; a 4xx is the caller's mistake and raises at once with the server's message.
The API key is read from an environment variable, and neither it nor credentials in the URL appear in an error.
No torch or transformers here: this module is imported inside trainers' reward workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from .urls import credentials, scrub, shown, without_credentials

DEFAULT_URL = "http://127.0.0.1:8000"
logger = logging.getLogger("rewardmill.clients")


class RewardServerError(RuntimeError):
    pass


class RewardClient:
    """Rows (or inputs) -> the server's `/v1/rewards` results, sync or async, with retries."""

    def __init__(self, url: str = DEFAULT_URL, *, api_key_env: str | None = None, timeout: float = 120.0,
                 retries: int = 6, backoff: float = 0.5, transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None):
        self._given_url = url
        self.url = without_credentials(url).rstrip("/")
        self.shown_url = shown(url).rstrip("/")
        self.auth = httpx.BasicAuth(*credentials(url)) if credentials(url) else None
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise RewardServerError(f"{api_key_env} is not set (it should hold the reward server's API key)")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.transport, self.async_transport = transport, async_transport
        self._sync: httpx.Client | None = None
        # one client per event loop (a client is bound to its loop), forgotten with the loop
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def rewards(self, rows: Sequence[dict]) -> list[dict]:
        return self.post({"rows": list(rows)})

    async def arewards(self, rows: Sequence[dict]) -> list[dict]:
        return await self.apost({"rows": list(rows)})

    def post(self, body: dict) -> list[dict]:
        """`body` to `/v1/rewards` (retried as the module says); its results."""
        if self._sync is None:
            self._sync = httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout,
                                      transport=self.transport, auth=self.auth)
        for attempt in range(self.retries + 1):
            response, problem = None, None
            try:
                response = self._sync.post("/v1/rewards", json=body)
            except httpx.TransportError as error:
                problem = error
            wait = self._retry_after(response, attempt, problem)
            if wait is None:
                return response.json()["results"]
            time.sleep(wait)
        raise AssertionError("unreachable")

    async def apost(self, body: dict) -> list[dict]:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None or client.is_closed:
            client = self._async[loop] = httpx.AsyncClient(base_url=self.url, headers=self.headers, auth=self.auth,
                                                           timeout=self.timeout, transport=self.async_transport)
        for attempt in range(self.retries + 1):
            response, problem = None, None
            try:
                response = await client.post("/v1/rewards", json=body)
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
        what = scrub(f"{type(problem).__name__}: {problem}" if response is None else _message(response),
                     self._given_url)
        if not transient:
            raise RewardServerError(f"the reward server at {self.shown_url} refused the request: {what}")
        if attempt >= self.retries:
            raise RewardServerError(f"the reward server at {self.shown_url} failed {attempt + 1} times; last: {what}")
        wait = self.backoff * 2 ** attempt * (0.5 + random.random())
        given = response.headers.get("retry-after", "") if response is not None else ""
        return max(wait, float(given)) if given.replace(".", "", 1).isdigit() else wait


def _message(response: httpx.Response) -> str:
    try:
        return f"{response.status_code} {response.json()['error']['message']}"
    except Exception:
        return f"{response.status_code} {response.text[:200]}"


def _row(prompt: Any, completion: Any) -> dict:
    """A (prompt, completion) as a `/v1/rewards` row: conversational (lists of messages) or instruction + response."""
    if isinstance(prompt, list):
        completion = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        return {"conversation": [*prompt, *completion]}
    return {"instruction": prompt, "response": completion}


def _is_conversational(prompt: Any) -> bool:
    """TRL's `is_conversational({"prompt": prompt})`: a list whose first element is a message with a role."""
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], dict) and "role" in prompt[0]


def trl_input(prompt: Any, completion: Any, conversational: bool) -> dict:
    """What GRPOTrainer scores with a reward model: `prompt + completion` through the chat template when the
    batch is conversational (decided on its first prompt, as TRL does), else as plain text."""
    if conversational:
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        if not isinstance(prompt, list) or not isinstance(completion, list):
            return {"messages": None}  # the server says why
        return {"messages": [*prompt, *completion]}
    if not isinstance(prompt, str) or not isinstance(completion, str):
        return {"text": None}
    return {"text": prompt + completion}


def trl_reward_func(url: str = DEFAULT_URL, *, api_key_env: str | None = None, **client_options: Any) -> Callable:
    """An async reward function for TRL's GRPOTrainer (and RLOOTrainer) `reward_funcs`."""
    client = RewardClient(url, api_key_env=api_key_env, **client_options)

    async def rewardmill(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        conversational = bool(prompts) and _is_conversational(prompts[0])
        inputs = [trl_input(p, c, conversational) for p, c in zip(prompts, completions)]
        results = await client.apost({"inputs": inputs}) if inputs else []
        rewards = []
        for i, result in enumerate(results):
            if result.get("error") is not None:
                logger.warning("rewardmill: no reward for completion %d of %d: %s", i, len(results), result["error"])
                rewards.append(None)
            else:
                rewards.append(result["score"])
        return rewards

    return rewardmill


_VERL_CLIENT: RewardClient | None = None


def _verl_client() -> RewardClient:
    global _VERL_CLIENT
    if _VERL_CLIENT is None:
        _VERL_CLIENT = RewardClient(os.environ.get("REWARDMILL_URL", DEFAULT_URL),
                                    api_key_env=os.environ.get("REWARDMILL_API_KEY_ENV"))
    return _VERL_CLIENT


def _verl_row(solution_str: Any, extra_info: Any) -> dict:
    extra = extra_info if isinstance(extra_info, dict) else {}
    prompt = extra.get("prompt", extra.get("question"))
    if prompt is None:
        raise RewardServerError("compute_score needs the prompt: put it in the dataset's extra_info as 'prompt' "
                                "(a string or a list of messages) or 'question'")
    if not isinstance(solution_str, str):
        raise RewardServerError(f"solution_str must be a string, got {type(solution_str).__name__}")
    return _row(prompt, solution_str)


def _verl_rows(one: dict, batch: dict) -> tuple[list[dict], bool]:
    """(rows, batched) from verl's one-item names or its batch reward manager's plural names."""
    given = [name for name, value in batch.items() if value is not None]
    if not given:
        return [_verl_row(one["solution_str"], one["extra_info"])], False
    if one["solution_str"] is not None:
        raise RewardServerError("compute_score got both solution_str and the batch names "
                                f"({', '.join(given)}): give one item or one batch")
    solutions = batch["solution_strs"]
    if solutions is None:
        raise RewardServerError("the batch call needs solution_strs (and extra_infos holding each prompt)")
    solutions = list(solutions)  # verl passes numpy object arrays or lists
    extras = list(batch["extra_infos"]) if batch["extra_infos"] is not None else [None] * len(solutions)
    if len(extras) != len(solutions):
        raise RewardServerError(f"solution_strs has {len(solutions)} items and extra_infos {len(extras)}")
    rows, problems = [], []
    for i, (solution, extra) in enumerate(zip(solutions, extras)):
        try:
            rows.append(_verl_row(solution, extra))
        except RewardServerError as error:
            problems.append(f"item {i}: {error}")
    if problems:
        raise RewardServerError(_several(problems, len(solutions)))
    return rows, True


def _several(problems: list[str], total: int) -> str:
    shown_ = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    return f"{len(problems)} of {total} items cannot be scored: {shown_}"


def _verl_scores(results: list[dict], batched: bool) -> float | list[float]:
    problems = [f"item {i}: {r['error']}" for i, r in enumerate(results) if r.get("error") is not None]
    if problems:
        what = _several(problems, len(results)) if batched else f"this response: {results[0]['error']}"
        raise RewardServerError(f"the reward server could not score {what}")
    scores = [float(r["score"]) for r in results]
    return scores if batched else scores[0]


def compute_score(data_source: Any = None, solution_str: str | None = None, ground_truth: Any = None,
                  extra_info: dict | None = None, *, data_sources: Sequence | None = None,
                  solution_strs: Sequence[str] | None = None, ground_truths: Sequence | None = None,
                  extra_infos: Sequence[dict] | None = None, **kwargs: Any) -> float | list[float]:
    """verl's custom reward function: the reward of `solution_str` as an answer to `extra_info['prompt']`; with
    verl's batch names (`solution_strs`, `extra_infos`, ...), one reward per item, in order."""
    rows, batched = _verl_rows({"solution_str": solution_str, "extra_info": extra_info},
                               {"data_sources": data_sources, "solution_strs": solution_strs,
                                "ground_truths": ground_truths, "extra_infos": extra_infos})
    return _verl_scores(_verl_client().rewards(rows), batched)


async def compute_score_async(data_source: Any = None, solution_str: str | None = None, ground_truth: Any = None,
                              extra_info: dict | None = None, *, data_sources: Sequence | None = None,
                              solution_strs: Sequence[str] | None = None, ground_truths: Sequence | None = None,
                              extra_infos: Sequence[dict] | None = None, **kwargs: Any) -> float | list[float]:
    """`compute_score` for the managers that await reward functions (verl's reward loop: naive, dapo, limited).
    verl's other managers call reward functions without awaiting them: name `compute_score` there."""
    rows, batched = _verl_rows({"solution_str": solution_str, "extra_info": extra_info},
                               {"data_sources": data_sources, "solution_strs": solution_strs,
                                "ground_truths": ground_truths, "extra_infos": extra_infos})
    return _verl_scores(await _verl_client().arewards(rows), batched)
