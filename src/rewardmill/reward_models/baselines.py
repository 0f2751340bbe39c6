"""Scorers without a model, so users can tell whether a model beats a heuristic. Each implements `Scorer`.

  length   score = the number of characters of the response (longer wins; a length-bias yardstick)
  random   score = a seeded pseudo-random number (a floor: about 50% on preference pairs)
"""

from __future__ import annotations

from collections.abc import Sequence

from ..scorer import Item, ItemResult, Progress


class LengthScorer:
    """Score = number of characters (Unicode code points) of the response."""

    name = "length"
    output_names: tuple[str, ...] = ("score",)
    item_output_names: tuple[str, ...] = ()
    identity = {"baseline": "length", "score": "characters of the response"}

    def score_items(self, items: Sequence[Item], on_progress: Progress | None = None) -> list[ItemResult]:
        results = [
            ItemResult([{"score": float(len(response))} for response in item.responses], [None] * len(item.responses))
            for item in items
        ]
        if on_progress is not None:
            on_progress(float(len(items)))
        return results

    def describe(self) -> dict[str, str]:
        return {
            "model": "length (baseline, no model)",
            "score": "number of characters of the response (Unicode code points); the prompt is not read",
            "use": "a yardstick: a reward model that does not beat it may just prefer longer answers",
        }


class RandomScorer:
    """Score = a seeded pseudo-random number in [0, 1), a function of (seed, prompt, response) alone: the same
    pair gets the same scores in any order or batch, and about half of all pairs are ranked right."""

    name = "random"
    output_names: tuple[str, ...] = ("score",)
    item_output_names: tuple[str, ...] = ()

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.identity = {"baseline": "random", "seed": seed}

    def score_items(self, items: Sequence[Item], on_progress: Progress | None = None) -> list[ItemResult]:
        import json
        import random

        results = []
        for item in items:
            prompt = json.dumps(item.prompt, sort_keys=True)
            results.append(ItemResult([{"score": random.Random(f"{self.seed}\0{prompt}\0{r}").random()}
                                       for r in item.responses], [None] * len(item.responses)))
        if on_progress is not None:
            on_progress(float(len(items)))
        return results

    def describe(self) -> dict[str, str]:
        return {"model": f"random (baseline, seed {self.seed})",
                "score": "a pseudo-random number in [0, 1) from the seed, the prompt and the response",
                "use": "a floor: about 50% accuracy on preference pairs"}


BASELINES = {"length": LengthScorer, "random": RandomScorer}


def baseline(name: str) -> LengthScorer | None:
    """The baseline scorer called `name`, or None when `name` is not a baseline."""
    factory = BASELINES.get(name)
    return factory() if factory else None
