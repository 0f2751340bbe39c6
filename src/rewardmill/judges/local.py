"""`TransformersBackend`: a judge model run in this process with transformers' `generate`.

Prompts are rendered with the model's chat template (generation prompt added, one BOS), sorted by length and
batched under the engine's row cap and token budget, left-padded with an attention mask (transformers derives each
row's positions from the mask), generated greedily by default, and returned in input order. Batching is invisible
in the result for greedy decoding: a test compares batched answers with one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from ..reward_models.engines.transformers_engine import plan_batches
from ..reward_models.loading import hub_access, load_model, load_tokenizer
from ..reward_models.options import EngineOptions, LoadOptions
from ..scorer import Conversation
from .backends import Answered, Completion, GenerationSettings, LabelDistribution, LabelRequest, distribution

# Generation keeps a KV cache per row and step: smaller batches than scoring.
DEFAULT_BATCH = EngineOptions(batch_size=8, max_tokens_per_batch=4096, min_fill=0.8)


@dataclass
class TransformersBackend:
    model_name: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    load: LoadOptions = field(default_factory=LoadOptions)
    batching: EngineOptions = DEFAULT_BATCH
    batch_size: int | None = None  # --batch-size: most prompts generated together (default DEFAULT_BATCH's)

    def __post_init__(self) -> None:
        import transformers

        self.batching = replace(DEFAULT_BATCH, batch_size=self.batch_size) if self.batch_size else self.batching

        options = hub_access(self.model_name, self.load)
        self.tokenizer = load_tokenizer(self.model_name, options)
        self.model = load_model(transformers.AutoModelForCausalLM, self.model_name, options)
        self.device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = pad_id if pad_id is not None else self.tokenizer.eos_token_id
        self.batching = self.batching.for_device(self.device)

    def encode(self, conversation: Conversation) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        while bos is not None and len(ids) > 1 and ids[0] == ids[1] == bos:
            ids = ids[1:]
        return ids

    def complete(self, conversations: Sequence[Conversation], schemas: Sequence[dict] | None = None,
                 on_answered: Answered | None = None) -> list[Completion]:
        """`schemas` are not enforced while generating here (no constrained decoding); the judge validates the
        JSON of every answer against the task's parser either way."""
        encoded = [self.encode(list(c)) for c in conversations]
        answers: list[Completion | None] = [None] * len(encoded)
        for batch in plan_batches([len(ids) for ids in encoded], self.batching):
            for index, (text, cut_off) in zip(batch, self._generate([encoded[i] for i in batch])):
                answers[index] = Completion(text, cut_off=cut_off)
            if on_answered is not None:
                on_answered(len(batch))
        return answers  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate(self, prompts: list[list[int]]) -> list[tuple[str, bool]]:
        """Each prompt's answer, and whether it was cut off at max_tokens (no end-of-sequence token by then)."""
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        sampling = self.settings.temperature > 0
        with seeded(self.device, self.settings.seed if sampling else None):
            output = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                max_new_tokens=self.settings.max_tokens, do_sample=sampling,
                temperature=self.settings.temperature if sampling else None, top_p=None, top_k=None,
                pad_token_id=self.pad_id,
            )
        stops = self.model.generation_config.eos_token_id
        stops = set(stops if isinstance(stops, list) else [stops]) - {None}
        reached_limit = output.shape[1] - width >= self.settings.max_tokens
        return [(self.tokenizer.decode(row[width:], skip_special_tokens=True),
                 reached_limit and not any(int(t) in stops for t in row[width:])) for row in output]

    @torch.inference_mode()
    def label_probabilities(self, requests: Sequence[LabelRequest]) -> list[LabelDistribution]:
        """One forward pass per request with the answer prefilled: the next-token distribution over the labels."""
        results = []
        for request in requests:
            head = self.tokenizer(request.prefill, add_special_tokens=False)["input_ids"]
            prefilled = self.encode(list(request.conversation)) + head
            label_ids = {}
            for label in request.labels:
                ids = self.tokenizer(request.prefill + label, add_special_tokens=False)["input_ids"]
                if len(ids) != len(head) + 1 or ids[: len(head)] != head:
                    results.append(LabelDistribution(error=f"the label {label!r} is not one token after "
                                                           f"{request.prefill!r} for this tokenizer"))
                    break
                label_ids[label] = ids[-1]
            else:
                logits = self.model(input_ids=torch.tensor([prefilled], device=self.device)).logits[0, -1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                results.append(distribution({label: logprobs[i].item() for label, i in label_ids.items()},
                                            request.labels))
        return results

    def describe(self) -> dict[str, str]:
        return {
            "backend": "local transformers generate (length-sorted batches, left padding)",
            "model": self.model_name,
            "batching": f"up to {self.batching.batch_size} prompts and {self.batching.max_tokens_per_batch} prompt "
                        "tokens per batch",
            "generation": self.settings.describe(),
        }


@contextmanager
def seeded(device: torch.device, seed: int | None) -> Iterator[None]:
    """Random numbers drawn inside come from `seed`, and the process's generators are as they were afterwards.

    The CPU generator and every generator of `device`'s kind are seeded as `torch.manual_seed(seed)` seeds them, so
    a batch samples the same answers as it did after that call; other kinds of device are left alone. `seed` None:
    nothing is seeded or restored (sampling draws from the process's generators, as the caller asked).
    """
    if seed is None:
        yield
        return
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    module = getattr(torch, device.type)  # torch.cuda, torch.mps, torch.xpu
    with torch.random.fork_rng(devices=range(module.device_count()), device_type=device.type):
        torch.default_generator.manual_seed(seed)
        getattr(module, "manual_seed_all", module.manual_seed)(seed)
        yield
