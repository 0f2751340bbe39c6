"""Bi-encoder relevance: cosine similarity of mean-pooled prompt and response embeddings.

This is not a preference reward model. It is the offline fallback (all-MiniLM-L6-v2, installable with
pip): it measures whether a response is on topic, in [-1, 1], not whether it is correct or helpful.
Each item is encoded as prompt ids followed by response ids, with token_type_ids 0 and 1 marking the two
halves; `forward` splits them and embeds each half on its own.
"""

from __future__ import annotations

import torch

from ...scorer import Conversation
from .base import Adapter, Batch, Encoded
from .pair import flatten


class SimilarityAdapter(Adapter):
    kind = "similarity"
    auto_classes = ("AutoModel",)

    @classmethod
    def detect(cls, evidence) -> str | None:
        architectures = evidence.architectures
        if evidence.code is None and not evidence.decoder and architectures and all(a.endswith("Model") for a in architectures):
            return f"{evidence.arch}: encoder without a reward head -> prompt/response embedding cosine (relevance only)"
        return None

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def encode(self, conversation: Conversation) -> Encoded:
        prompt, response = flatten(conversation)
        p = self.fit(self.tokenizer(prompt)["input_ids"], keep_prefix=1)
        r = self.fit(self.tokenizer(response)["input_ids"], keep_prefix=1)
        return Encoded(p + r, [0] * len(p) + [1] * len(r))

    def _embed(self, sequences: list[list[int]]) -> torch.Tensor:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, s in enumerate(sequences):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        prompts, responses = [], []
        for item in batch.items:
            split = item.token_type_ids.index(1)
            prompts.append(item.input_ids[:split])
            responses.append(item.input_ids[split:])
        embedded = self._embed(prompts + responses)
        n = len(prompts)
        return {"score": (embedded[:n] * embedded[n:]).sum(-1)}

    def describe(self) -> dict[str, str]:
        return {
            **super().describe(),
            "input": "prompt and response embedded separately (earlier turns flattened into the prompt)",
            "score": "cosine of mean-pooled embeddings, in [-1, 1]: relevance, not preference",
        }
