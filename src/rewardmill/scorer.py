"""The one protocol every scorer implements: reward models, LLM judges and baselines alike.

A scorer receives *items*: one prompt (the conversation before the answer) and one or more candidate
responses to it, so that a judge can rate a row's responses together and a reward model can score them in one
length-sorted run. For each item it returns an `ItemResult`: outputs per response, an error per response, and
outputs that belong to the item as a whole (a judge's raw text, a pairwise verdict). Nothing here knows about
torch, rows or files: the row layer (`row_scoring`) turns rows into items and results back into rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]
Conversation = list[Message]
Progress = Callable[[float], None]


class Failure(str):
    """An error that came from running a scorer (the model raised, a request failed, an answer did not parse),
    not from what the row holds. It reads as a plain string; the row layer reports it to `on_failure`, and the CLI
    exits non-zero after a run with any (unless told to allow errors)."""


@dataclass(frozen=True)
class Item:
    """A prompt and the candidate responses to score against it (one or more)."""

    prompt: tuple[Message, ...]
    responses: tuple[str, ...]

    def conversation(self, k: int = 0) -> Conversation:
        """The prompt followed by response `k` as the assistant's turn."""
        return [dict(m) for m in self.prompt] + [{"role": "assistant", "content": self.responses[k]}]

    def conversations(self) -> list[Conversation]:
        return [self.conversation(k) for k in range(len(self.responses))]


@dataclass
class ItemResult:
    """What a scorer returns for one item.

    `outputs[k]` maps output name -> value for response k, or is None where that response failed, and then
    `errors[k]` says why. `item_outputs` holds per-item values (named by `Scorer.item_output_names`).
    `error` set means the whole item failed (e.g. a judge's answer did not parse).
    """

    outputs: list[dict[str, Any] | None]
    errors: list[str | None]
    item_outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failed(cls, responses: int, reason: str, item_outputs: dict[str, Any] | None = None) -> ItemResult:
        return cls([None] * responses, [None] * responses, dict(item_outputs or {}), reason)


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores items: `RewardModel`, the baselines, and later the LLM judges."""

    name: str
    output_names: tuple[str, ...]  # per response; "score" first
    item_output_names: tuple[str, ...]  # per item; may be empty

    def score_items(self, items: Sequence[Item], on_progress: Progress | None = None) -> list[ItemResult]:
        """One result per item, in order. `on_progress` receives completed items (fractions allowed)."""
        ...

    def describe(self) -> dict[str, str]:
        """What this scorer is and how it computes its outputs (printed by `rewardmill inspect`)."""
        ...

    # Optional: `identity`, a JSON-able dict of everything the outputs depend on (model, revision, settings).
    # A resumed run is refused when it differs; without it, the name and output names stand in.
