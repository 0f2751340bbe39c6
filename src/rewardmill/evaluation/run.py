"""Score preference pairs with one or more scorers and summarize: `evaluate(pairs, scorers)` -> `Evaluation`.

Each pair is one item with two responses (chosen first), so a reward model scores the chosen and rejected answers
of a whole chunk in one length-sorted engine run, and a pairwise judge asks both orders itself (position bias
shows as inconsistency, not as a bonus for the chosen answer).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..rows import error_groups
from ..scorer import Item, Scorer
from .layouts import Pair
from .metrics import Accuracy, accuracy, agreement, bucket_order, length_buckets, outcome


@dataclass
class ScorerRun:
    """One scorer's results, pair by pair (None where it has no score or verdict)."""

    name: str
    baseline: bool = False  # a yardstick (length, random): never reported as the best scorer
    chosen: list[float | None] = field(default_factory=list)
    rejected: list[float | None] = field(default_factory=list)
    correct: list[bool | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    consistent: list[bool | None] = field(default_factory=list)  # pairwise judges: both orders agreed

    @property
    def margins(self) -> list[float | None]:
        return [c - r if c is not None and r is not None else None for c, r in zip(self.chosen, self.rejected)]


def score_pairs(pairs: Sequence[Pair], scorer: Scorer, name: str, chunk: int = 2048) -> ScorerRun:
    identity = getattr(scorer, "identity", None)
    run = ScorerRun(name, baseline=isinstance(identity, dict) and "baseline" in identity)
    value = scorer.output_names[0] if scorer.output_names else "score"  # "score", or a judge's "rating"
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        results = scorer.score_items([Item(p.prompt, (p.chosen, p.rejected)) for p in part])
        for result in results:
            winner = result.item_outputs.get("winner", ...) if result.item_outputs else ...
            if result.error is not None or any(result.errors):
                reason = result.error or next(e for e in result.errors if e)
                run.chosen.append(None), run.rejected.append(None), run.correct.append(None)
                run.errors.append(str(reason)), run.consistent.append(None)
            elif winner is not ...:  # a pairwise verdict: response 0 is the chosen one; a tie (None) is wrong
                run.chosen.append(None), run.rejected.append(None), run.correct.append(winner == 0)
                run.errors.append(None), run.consistent.append(result.item_outputs.get("consistent"))
            else:
                chosen, rejected = (float(o[value]) for o in result.outputs)
                run.chosen.append(chosen), run.rejected.append(rejected)
                run.correct.append(outcome(chosen, rejected)), run.errors.append(None), run.consistent.append(None)
    return run


def unusable_row(message: str) -> dict:
    """A row that gave no pair, as {"row": its number from 0 (None when the message names none), "reason"}."""
    number = error_groups.row_number(message)
    return {"row": number, "reason": message.split(": ", 1)[1] if number is not None else message}


@dataclass
class Evaluation:
    pairs: list[Pair]
    runs: list[ScorerRun]
    seed: int = 0
    resamples: int = 1000
    input_errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """Every number of the report."""
        subsets = sorted({p.subset for p in self.pairs})
        differences = [len(p.chosen) - len(p.rejected) for p in self.pairs]
        buckets = length_buckets(differences)
        scorers = {}
        for run in self.runs:
            scored = [i for i, c in enumerate(run.correct) if c is not None]
            overall = self._accuracy([run.correct[i] for i in scored])
            margins = [m for m in run.margins if m is not None]
            entry = {
                **overall.as_dict(),
                "baseline": run.baseline,
                "errors": sum(e is not None for e in run.errors),
                "errors_by_reason": error_groups.ranked(error_groups.group(self._error_messages(run))),
                "ties": sum(1 for c, r in zip(run.chosen, run.rejected) if c is not None and c == r),
                "subsets": {s: self._accuracy([run.correct[i] for i in scored if self.pairs[i].subset == s]).as_dict()
                            for s in subsets},
                "length_bias": [{"bucket": b, **self._accuracy([run.correct[i] for i in scored if buckets[i] == b],
                                                               ).as_dict()} for b in bucket_order()
                                if any(buckets[i] == b for i in scored)],
                "margins": _histogram(margins),
            }
            if any(c is not None for c in run.consistent):
                consistent = [c for c in run.consistent if c is not None]
                entry["position_consistency"] = sum(consistent) / len(consistent)
            scorers[run.name] = entry
        matrix = {a.name: {b.name: agreement(a.correct, b.correct)[0] for b in self.runs} for a in self.runs}
        differ = {f"{a.name} vs {b.name}": [i for i, (x, y) in enumerate(zip(a.correct, b.correct))
                                            if x is not None and y is not None and x != y]
                  for k, a in enumerate(self.runs) for b in self.runs[k + 1:]}
        return {"pairs": len(self.pairs), "input_errors": len(self.input_errors),
                "unusable_rows": [unusable_row(message) for message in self.input_errors], "subsets": subsets,
                "seed": self.seed, "bootstrap_resamples": self.resamples, "scorers": scorers,
                "agreement": matrix, "disagreeing_pairs": differ, "disagreements": self.disagreements()}

    def _error_messages(self, run: ScorerRun) -> list[str]:
        """The run's errors as "row N: reason", N the pair's input row (where it is known)."""
        return [error if pair.row is None else f"row {pair.row}: {error}"
                for pair, error in zip(self.pairs, run.errors) if error is not None]

    def _accuracy(self, correct: list[bool]) -> Accuracy:
        return accuracy(correct, resamples=self.resamples, seed=self.seed)

    def disagreements(self, limit: int = 10) -> list[dict]:
        """The pairs scorers disagree on most (with one scorer: those it gets most confidently wrong), ranked by
        how sure the scorer in the wrong was (its margin in standard deviations of its margins)."""
        spreads = {}
        for run in self.runs:
            margins = [m for m in run.margins if m is not None]
            spreads[run.name] = float(np.std(margins)) if len(margins) > 1 and np.std(margins) > 0 else 1.0
        ranked = []
        for i, pair in enumerate(self.pairs):
            verdicts = {run.name: run.correct[i] for run in self.runs if run.correct[i] is not None}
            wrong = [run for run in self.runs if run.correct[i] is False]
            if not wrong or (len(self.runs) > 1 and len(set(verdicts.values())) < 2):
                continue
            sureness = max((abs(run.margins[i]) / spreads[run.name] if run.margins[i] is not None else 0.0)
                           for run in wrong)
            ranked.append((sureness, i, verdicts))
        ranked.sort(key=lambda entry: (-entry[0], entry[1]))
        return [{"pair": i, "row": self.pairs[i].row, "subset": self.pairs[i].subset,
                 "prompt": self.pairs[i].prompt[-1]["content"],
                 "chosen": self.pairs[i].chosen, "rejected": self.pairs[i].rejected,
                 "right": sorted(n for n, v in verdicts.items() if v),
                 "wrong": sorted(n for n, v in verdicts.items() if not v),
                 "margins": {run.name: run.margins[i] for run in self.runs}, "wrong_sureness": round(sureness, 3)}
                for sureness, i, verdicts in ranked[:limit]]


def _histogram(margins: list[float], bins: int = 30) -> dict:
    if not margins:
        return {"counts": [], "edges": []}
    counts, edges = np.histogram(np.asarray(margins), bins=bins)
    return {"counts": counts.tolist(), "edges": edges.tolist(), "mean": float(np.mean(margins)),
            "median": float(np.median(margins))}


def scorer_label(name: str, taken: set[str]) -> str:
    """A short, unique name for a scorer in tables and column names (a path's last part)."""
    base = re.split(r"[\\/]", name.rstrip("/\\"))[-1] or name
    label, n = base, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    taken.add(label)
    return label
