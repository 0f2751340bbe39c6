"""Where a judge's requests go. One interface: `complete(conversations) -> [Completion]`, in order, one per
request; a request that fails gets a `Completion` with an error instead of text, never an exception that sinks
its neighbours.

  OpenAIBackend  any OpenAI-compatible server (OpenAI, vLLM, SGLang, llama.cpp, Ollama) through the official
                 `openai` client: async requests, at most `concurrency` in flight, `timeout` per request; the
                 client is the one layer that retries (429, 5xx, connection errors and timeouts, with backoff
                 and jitter, honouring Retry-After). The API key is read from an environment variable and is
                 never printed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import OptionsError
from ..scorer import Conversation


@dataclass
class Completion:
    text: str | None = None
    error: str | None = None
    retryable: bool = False  # a malformed answer: the judge may ask again within its retry budget
    status: int | None = None  # HTTP status of a failed request


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.0
    max_tokens: int = 1024
    seed: int | None = 0

    def describe(self) -> str:
        return f"temperature {self.temperature}, max_tokens {self.max_tokens}, seed {self.seed}"


class Backend(Protocol):
    model_name: str
    settings: GenerationSettings

    def complete(self, conversations: Sequence[Conversation]) -> list[Completion]: ...

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
        if self.concurrency < 1:
            raise OptionsError("--concurrency must be at least 1")
        if self.timeout <= 0:
            raise OptionsError("--timeout must be positive")

    def _key(self) -> str:
        # Servers without authentication accept any key; the client needs a non-empty one.
        return os.environ.get(self.api_key_env) or "EMPTY"

    def complete(self, conversations: Sequence[Conversation]) -> list[Completion]:
        if not conversations:
            return []
        return asyncio.run(self._complete_all(conversations))

    async def _complete_all(self, conversations: Sequence[Conversation]) -> list[Completion]:
        import openai

        gate = asyncio.Semaphore(self.concurrency)
        async with openai.AsyncOpenAI(base_url=self.base_url, api_key=self._key(), timeout=self.timeout,
                                      max_retries=self.max_retries) as client:

            async def one(messages: Conversation) -> Completion:
                async with gate:
                    return await self._one(client, messages)

            return list(await asyncio.gather(*(one(list(c)) for c in conversations)))

    async def _one(self, client, messages: Conversation) -> Completion:
        import openai

        key = self._key()
        try:
            response = await client.chat.completions.create(
                model=self.model_name, messages=messages, temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens, seed=self.settings.seed,
            )
            text = response.choices[0].message.content
            if not isinstance(text, str):
                return Completion(error="the server's answer has no message text", retryable=True)
            return Completion(text)
        except openai.APIStatusError as error:
            return Completion(error=_scrub(f"HTTP {error.status_code} from {self.base_url}: {error.message}", key),
                              status=error.status_code)
        except openai.APITimeoutError:
            return Completion(error=f"no answer within {self.timeout:g} s, {self.max_retries + 1} tries")
        except openai.APIConnectionError as error:
            return Completion(error=_scrub(f"cannot reach {self.base_url} ({error}), {self.max_retries + 1} tries", key))
        except (openai.APIResponseValidationError, ValueError, KeyError, IndexError, AttributeError) as error:
            return Completion(error=_scrub(f"the server's answer could not be read ({type(error).__name__})", key),
                              retryable=True)

    def describe(self) -> dict[str, str]:
        return {
            "backend": f"OpenAI-compatible HTTP at {self.base_url}",
            "model": self.model_name,
            "requests": f"at most {self.concurrency} in flight, {self.timeout:g} s timeout, up to {self.max_retries} "
                        "retries on 429/5xx/connection errors (backoff with jitter, Retry-After honoured)",
            "generation": self.settings.describe(),
            "API key": f"from ${self.api_key_env}" + ("" if os.environ.get(self.api_key_env) else " (not set)"),
        }


def _scrub(message: str, key: str) -> str:
    return message.replace(key, "***") if key and key != "EMPTY" else message
