"""`JudgeSpec`: a judge described by plain options, so it can be built anywhere (the CLI, each Ray actor)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import OptionsError
from .backends import GenerationSettings

ENGINES = ("http", "transformers", "vllm")


@dataclass(frozen=True)
class JudgeSpec:
    task: str
    model: str
    base_url: str | None = None
    backend: str = "auto"  # auto: http with base_url, else transformers
    aspect: str | None = None
    out_of_scale: str | None = None  # quality, complexity: keep (default) or error
    template: str | None = None
    answer_regex: str | None = None
    answer_schema: dict | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout: float = 60.0
    http_retries: int = 4
    retries: int = 1
    structured: bool = False
    scoring: str = "text"
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    cache: str | None = None
    device: str | None = None  # the local judge (--backend transformers): where and how it loads, and its batches
    dtype: str = "default"
    batch_size: int | None = None

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
        from ..runs.cache import answer_cache
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
            from ..reward_models.loading import LoadOptions
            from .local import TransformersBackend

            backend = TransformersBackend(self.model, self.settings, load=LoadOptions(device=self.device, dtype=self.dtype),
                                          batch_size=self.batch_size)
        task = make_task(self.task, aspect=self.aspect, template=self.template, regex=self.answer_regex,
                         schema=self.answer_schema, out_of_scale=self.out_of_scale)
        return Judge(task, backend, retries=self.retries, cache=answer_cache(self.cache) if self.cache else None,
                     scoring=self.scoring, structured=self.structured)
