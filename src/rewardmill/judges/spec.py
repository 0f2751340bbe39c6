"""`JudgeSpec`: a judge described by plain options, so it can be built anywhere (the CLI, each Ray actor).

Its fields declare the flags of `rewardmill judge`; `dpo --judge-task` and `eval --judge-task` build their judge
through it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OptionsError
from ..option_fields import flag_like, option
from ..reward_models.options import DType, EngineOptions, LoadOptions
from .backends import GenerationSettings
from .judge import SCORINGS
from .tasks import ASPECTS, OUT_OF_SCALE, TASKS

ENGINES = ("http", "transformers", "vllm")
BACKENDS = ("auto", *ENGINES)
TASK_CHOICES = (*TASKS, "custom")


def read_answer_schema(path: Path | None) -> dict | None:
    """--answer-schema FILE: the JSON schema it holds."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise OptionsError(f"--answer-schema {path}: {error}") from None


@dataclass(frozen=True)
class JudgeSpec:
    task: str = option(
        help="quality (instruction + responses -> scores), complexity (instructions -> scores), ultrafeedback "
        "(generations -> ratings + rationales), pairwise (two responses -> winner, both orders), rating (one response "
        "-> rating 1-10), custom (--template with --answer-regex or --answer-schema).", show_default=False,
        choices=TASK_CHOICES, checked_later=True)
    model: str = option(
        flag=("--model", "-m"), help="The judge model: its name on the server with --base-url, else a hub id or local "
        "directory run here with transformers.", show_default=False)
    base_url: str | None = option(
        None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, llama.cpp, Ollama, "
        "OpenAI). Without it the model runs in this process.")
    backend: str = option(
        "auto", help="auto (http with --base-url, else transformers), http, transformers, or vllm (vLLM's offline "
        "engine in this process; needs vllm installed).", choices=BACKENDS, checked_later=True)
    aspect: str | None = option(
        None, help="ultrafeedback: overall, helpfulness, honesty, truthfulness or instruction-following.",
        choices=tuple(ASPECTS), checked_later=True)
    out_of_scale: str | None = option(
        None, help="quality, complexity: keep (default; as distilabel) a score outside the 1..n the prompt states, "
        "marked true in the out_of_scale column and counted in the summary, or error (a re-ask, then a per-row "
        "error).", choices=OUT_OF_SCALE, checked_later=True)
    template: str | None = option(
        None, help="custom task: a Jinja template (string or file) with instruction, messages and response.")
    answer_regex: str | None = option(None, help="custom task: a regex whose first group is the score.")
    answer_schema: dict | None = option(
        None, help="custom task: a JSON schema file the answer must match (its 'score' field is the score).",
        cli_type=Path, parse=read_answer_schema)
    api_key_env: str = option("OPENAI_API_KEY", help="Environment variable holding the API key (never printed).")
    concurrency: int = option(16, help="Requests in flight at once.")
    timeout: float = option(60.0, help="Seconds to wait for one answer (retried with backoff).")
    http_retries: int = option(4, help="Retries of a request on 429, 5xx, timeouts and connection errors.")
    retries: int = option(1, help="Re-asks of an answer that does not parse, before the row gets an error.")
    structured: bool = option(
        False, help="Ask for JSON that matches the task's schema (response_format json_schema, or json_object where "
        "the server has only that); every answer is validated here too.")
    scoring: str = option(
        "text", help="text (parse the written answer) or logprobs (rating, pairwise: the probabilities of the "
        "verdict's labels, renormalised; a backend without them gives per-row errors).", choices=SCORINGS,
        checked_later=True)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    cache: str | None = option(
        None, help="Folder of a cache of answers (SQLite) reused across runs: identical requests are not sent again.",
        cli_type=Path, parse=lambda path: None if path is None else str(path))
    # the local judge (--backend transformers): where and how it loads, and its batches
    device: str | None = flag_like(LoadOptions, "device")
    dtype: DType = flag_like(LoadOptions, "dtype")
    batch_size: int | None = flag_like(EngineOptions, "batch_size")

    @property
    def engine(self) -> str:
        engine = self.backend if self.backend != "auto" else ("http" if self.base_url else "transformers")
        if engine not in ENGINES:
            raise OptionsError(f"--backend must be auto, http, transformers or vllm, got {self.backend!r}")
        if (engine == "http") != (self.base_url is not None):
            raise OptionsError("--base-url goes with --backend http (or auto), and only with it")
        return engine

    def scorer(self):
        """The judge (a `Scorer`) these options describe."""
        from ..cache import answer_cache
        from .judge import Judge
        from .tasks import make_task

        engine = self.engine
        local = [flag for flag, given in (("--device", self.device), ("--dtype", self.dtype != "default"),
                                          ("--batch-size", self.batch_size)) if given]
        if local and engine != "transformers":
            raise OptionsError(f"{', '.join(local)} applies to a judge run here with transformers, not to --backend "
                               f"{engine}")
        if engine == "http":
            from .backends import OpenAIBackend

            backend = OpenAIBackend(self.model, self.base_url, api_key_env=self.api_key_env,
                                    concurrency=self.concurrency, timeout=self.timeout, max_retries=self.http_retries,
                                    settings=self.settings)
        elif engine == "vllm":
            from .vllm_backend import VLLMBackend

            backend = VLLMBackend(self.model, self.settings)
        else:
            from .local import TransformersBackend

            load = LoadOptions(device=self.device, dtype=self.dtype)
            backend = TransformersBackend(self.model, self.settings, load=load, batch_size=self.batch_size)
        task = make_task(self.task, aspect=self.aspect, template=self.template, regex=self.answer_regex,
                         schema=self.answer_schema, out_of_scale=self.out_of_scale)
        return Judge(task, backend, retries=self.retries, cache=answer_cache(self.cache) if self.cache else None,
                     scoring=self.scoring, structured=self.structured)
