"""Metrics of a scorer on preference pairs: accuracy (chosen above rejected; a tie counts as wrong, as
RewardBench counts it) with a seeded 95% bootstrap interval, margins, accuracy by length difference, and the
agreement of two scorers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Length difference (chosen minus rejected, in characters) buckets for the length-bias view.
LENGTH_EDGES = (-1000, -300, -100, -30, 0, 30, 100, 300, 1000)


def outcome(chosen: float | None, rejected: float | None) -> bool | None:
    """True when chosen scored above rejected, False when not (a tie included), None when a score is missing."""
    if chosen is None or rejected is None:
        return None
    return chosen > rejected


@dataclass(frozen=True)
class Accuracy:
    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"accuracy": self.value, "ci95": [self.low, self.high], "n": self.n}


def accuracy(correct: Sequence[bool], *, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Accuracy:
    """Share of True, with a percentile bootstrap interval (`resamples` resamples of the pairs, seeded)."""
    values = np.asarray(correct, dtype=float)
    if values.size == 0:
        return Accuracy(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Accuracy(float(values.mean()), float(low), float(high), int(values.size))


def length_buckets(differences: Sequence[float], edges: Sequence[float] = LENGTH_EDGES) -> list[str]:
    """The bucket label of each length difference: '<-1000', '-1000..-300', ..., '>=1000'."""
    labels = []
    for difference in differences:
        if difference < edges[0]:
            labels.append(f"<{edges[0]}")
            continue
        for low, high in zip(edges, edges[1:]):
            if low <= difference < high:
                labels.append(f"{low}..{high}")
                break
        else:
            labels.append(f">={edges[-1]}")
    return labels


def bucket_order(edges: Sequence[float] = LENGTH_EDGES) -> list[str]:
    return [f"<{edges[0]}", *(f"{a}..{b}" for a, b in zip(edges, edges[1:])), f">={edges[-1]}"]


def agreement(a: Sequence[bool | None], b: Sequence[bool | None]) -> tuple[float, int]:
    """Share of pairs (both scored) on which two scorers pick the same response, and how many pairs that is."""
    both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not both:
        return float("nan"), 0
    return sum(x == y for x, y in both) / len(both), len(both)
