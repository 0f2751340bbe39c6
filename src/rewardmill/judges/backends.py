"""Where a judge's requests go. One interface: `complete(conversations) -> [Completion]`, in order, one per
request; a request that fails gets a `Completion` with an error instead of text, never an exception that sinks
its neighbours.

  OpenAIBackend  any OpenAI-compatible server (OpenAI, vLLM, SGLang, llama.cpp, Ollama) through the official
                 `openai` client: async requests, at most `concurrency` in flight, `timeout` per request; the
                 client is the one layer that retries (429, 5xx, connection errors and timeouts, with backoff
                 and jitter, honouring Retry-After). The API key is read from an environment variable and is
                 never printed.

The judge model may also run in this process: `local.TransformersBackend` (transformers' `generate`) and
`vllm_backend.VLLMBackend` (vLLM's offline engine), each imported only when chosen.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import OptionsError
from ..option_fields import option
from ..scorer import Conversation
from ..urls import credentials, scrub, shown, without_credentials


@dataclass
class Completion:
    text: str | None = None
    error: str | None = None
    retryable: bool = False  # a malformed answer: the judge may ask again within its retry budget
    status: int | None = None  # HTTP status of a failed request
    cut_off: bool = False  # the answer reached the token limit before it finished


@dataclass(frozen=True)
class LabelRequest:
    """Log-probability scoring: the chat request, the text the answer is prefilled (or must be seen) up to, and
    the single-token labels whose next-token probabilities are read there."""

    conversation: Conversation
    prefill: str
    labels: tuple[str, ...]


@dataclass
class LabelDistribution:
    probabilities: dict[str, float] | None = None  # renormalised over the labels
    error: str | None = None
    text: str | None = None  # what the model wrote, where the backend generated text to find the prefill


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = option(0.0, help="Sampling temperature (0: greedy).")
    max_tokens: int = option(1024, flag="--max-new-tokens", help="Longest answer, in tokens (room for the judge's "
                             "reasoning); an answer cut off there is that row's error.")
    seed: int | None = option(0, help="Sampling seed sent with every request.", cli_type=int)

    def describe(self) -> str:
        return f"temperature {self.temperature}, max_tokens {self.max_tokens}, seed {self.seed}"


Answered = Callable[[int], None]  # told how many more requests have their answer, as they arrive


class Backend(Protocol):
    model_name: str
    settings: GenerationSettings

    def complete(self, conversations: Sequence[Conversation], schemas: Sequence[dict] | None = None,
                 on_answered: Answered | None = None) -> list[Completion]: ...

    def label_probabilities(self, requests: Sequence[LabelRequest]) -> list[LabelDistribution]: ...

    def describe(self) -> dict[str, str]: ...


@dataclass
class OpenAIBackend:
    model_name: str
    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout: float = 60.0
    max_retries: int = 4
    settings: GenerationSettings = field(default_factory=GenerationSettings)

    def __post_init__(self) -> None:
        self.json_object_only = False
        if self.concurrency < 1:
            raise OptionsError("--concurrency must be at least 1")
        if self.timeout <= 0:
            raise OptionsError("--timeout must be positive")

    def _key(self) -> str:
        # Servers without authentication accept any key; the client needs a non-empty one.
        return os.environ.get(self.api_key_env) or "EMPTY"

    def complete(self, conversations: Sequence[Conversation], schemas: Sequence[dict] | None = None,
                 on_answered: Answered | None = None) -> list[Completion]:
        """With `schemas`, each answer is constrained to its JSON schema (`response_format` json_schema); a server
        that refuses json_schema gets json_object (plus the schema in llama.cpp's own field) for the rest of the run."""
        requests = [(list(c), schemas[i] if schemas else None) for i, c in enumerate(conversations)]
        return self._run(self._one, requests, on_answered)

    def _run(self, ask, requests: list, on_answered: Answered | None = None) -> list:
        """`ask(client, request)` for every request, at most `concurrency` at once, answers in order."""
        if not requests:
            return []
        return asyncio.run(self._gather(ask, requests, on_answered))

    async def _gather(self, ask, requests: list, on_answered: Answered | None) -> list:
        import openai

        gate = asyncio.Semaphore(self.concurrency)
        # URL credentials go as basic auth (what httpx does with them itself), so the URL httpx logs has none
        login = credentials(self.base_url)
        http_client = openai.DefaultAsyncHttpxClient(auth=login) if login else None
        async with openai.AsyncOpenAI(base_url=without_credentials(self.base_url), api_key=self._key(),
                                      timeout=self.timeout, max_retries=self.max_retries,
                                      http_client=http_client) as client:

            async def one(request):
                async with gate:
                    answer = await ask(client, request)
                if on_answered is not None:
                    on_answered(1)
                return answer

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def _response_format(self, schema: dict | None) -> dict:
        if schema is None:
            return {}
        if self.json_object_only:
            return {"response_format": {"type": "json_object"}, "extra_body": {"schema": schema}}
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "judgement", "schema": schema, "strict": True}}}

    async def _one(self, client, request: tuple[Conversation, dict | None]) -> Completion:
        import openai

        messages, schema = request
        key = self._key()
        try:
            try:
                response = await client.chat.completions.create(
                    model=self.model_name, messages=messages, temperature=self.settings.temperature,
                    max_tokens=self.settings.max_tokens, seed=self.settings.seed, **self._response_format(schema),
                )
            except openai.BadRequestError as error:
                if schema is None or self.json_object_only or "json_schema" not in str(error.message):
                    raise
                self.json_object_only = True  # this server has json_object only (llama.cpp): use it from now on
                response = await client.chat.completions.create(
                    model=self.model_name, messages=messages, temperature=self.settings.temperature,
                    max_tokens=self.settings.max_tokens, seed=self.settings.seed, **self._response_format(schema),
                )
            text = response.choices[0].message.content
            if not isinstance(text, str):
                return Completion(error="the server's answer has no message text", retryable=True)
            return Completion(text, cut_off=response.choices[0].finish_reason == "length")
        except openai.APIStatusError as error:
            return Completion(error=_scrub(f"HTTP {error.status_code} from {shown(self.base_url)}: {error.message}",
                                           key, self.base_url),
                              status=error.status_code)
        except openai.APITimeoutError:
            return Completion(error=f"no answer within {self.timeout:g} s, {self.max_retries + 1} tries")
        except openai.APIConnectionError as error:
            return Completion(error=_scrub(f"cannot reach {shown(self.base_url)} ({error}), "
                                           f"{self.max_retries + 1} tries", key, self.base_url))
        except (openai.APIResponseValidationError, ValueError, KeyError, IndexError, AttributeError) as error:
            return Completion(error=_scrub(f"the server's answer could not be read ({type(error).__name__})", key),
                              retryable=True)

    def label_probabilities(self, requests: Sequence[LabelRequest]) -> list[LabelDistribution]:
        """The server generates its answer with top_logprobs; the distribution is read at the first token after
        the answer's text reaches the prefill (chat APIs cannot be prefilled portably)."""
        return self._run(self._labels, list(requests))

    async def _labels(self, client, request: LabelRequest) -> LabelDistribution:
        import openai

        try:
            response = await client.chat.completions.create(
                model=self.model_name, messages=list(request.conversation), temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens, seed=self.settings.seed, logprobs=True, top_logprobs=20,
            )
            choice = response.choices[0]
            tokens = (choice.logprobs.content or []) if choice.logprobs else []
        except openai.APIStatusError as error:
            message = f"HTTP {error.status_code} from {shown(self.base_url)}: {error.message}"
            return LabelDistribution(error=_scrub(message, self._key(), self.base_url))
        except (openai.APIError, ValueError, AttributeError, IndexError) as error:
            return LabelDistribution(error=_scrub(f"no answer from {shown(self.base_url)} ({type(error).__name__})",
                                                  self._key(), self.base_url))
        text = "".join(t.token for t in tokens)
        if not tokens:
            return LabelDistribution(error="the server returned no log-probabilities (does it support logprobs?)",
                                     text=choice.message.content)
        written = ""
        for position, token in enumerate(tokens):
            if written.rstrip().endswith(request.prefill.strip()):
                found = {t.token.strip(): t.logprob for t in token.top_logprobs or []}
                return distribution(found, request.labels, text)
            written += token.token
        if choice.finish_reason == "length":
            return LabelDistribution(error=cut_off(self.settings.max_tokens, f"before it reached "
                                                                             f"{request.prefill.strip()!r}"), text=text)
        return LabelDistribution(error=f"the answer never reached {request.prefill.strip()!r}, so no label "
                                       "probabilities could be read there", text=text)

    def describe(self) -> dict[str, str]:
        return {
            "backend": f"OpenAI-compatible HTTP at {shown(self.base_url)}",
            "model": self.model_name,
            "requests": f"at most {self.concurrency} in flight, {self.timeout:g} s timeout, up to {self.max_retries} "
                        "retries on 429/5xx/connection errors (backoff with jitter, Retry-After honoured)",
            "generation": self.settings.describe(),
            "API key": f"from ${self.api_key_env}" + ("" if os.environ.get(self.api_key_env) else " (not set)"),
        }


def cut_off(max_tokens: int, where: str = "before it finished") -> str:
    """The reason of a row whose answer stopped at the token limit."""
    return f"the judge's answer was cut off at --max-new-tokens {max_tokens} {where} (raise --max-new-tokens)"


def _scrub(message: str, key: str, url: str | None = None) -> str:
    """`message` without the API key or the credentials of `url`."""
    message = scrub(message, url)
    return message.replace(key, "***") if key and key != "EMPTY" else message


def distribution(logprobs: dict[str, float], labels: Sequence[str], text: str | None = None) -> LabelDistribution:
    """Renormalise the labels' probabilities among themselves; an error when none of them is there."""
    import math

    present = {label: math.exp(logprobs[label]) for label in labels if label in logprobs}
    if not present:
        return LabelDistribution(error=f"none of the labels {', '.join(labels)} is among the next token's "
                                       "log-probabilities", text=text)
    total = sum(present.values())
    return LabelDistribution({label: present.get(label, 0.0) / total for label in labels}, text=text)
