"""`rewardmill eval`: how often scorers prefer the better answer of preference pairs, where they fail, whether
they just like longer answers, and how they agree, with a report (report.json, pairs.parquet, index.html)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..errors import InputError, RowError
from ..rows.shapes import UnreadableRow
from .layouts import LAYOUTS, Pair, detect_layout, to_pair
from .run import Evaluation, ScorerRun, score_pairs, scorer_label

__all__ = ["LAYOUTS", "Evaluation", "Pair", "ScorerRun", "load_pairs", "score_pairs", "scorer_label"]


def load_pairs(rows: Iterable[Any], layout: str | None = None) -> tuple[list[Pair], list[str], str]:
    """(pairs, errors of the rows that are not usable pairs, the layout used)."""
    if layout is not None and layout not in LAYOUTS:
        raise InputError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    pairs, errors = [], []
    for index, row in enumerate(rows):
        if layout is None and isinstance(row, dict) and not isinstance(row, UnreadableRow):
            layout = detect_layout(row)
        try:
            pairs.append(dataclasses.replace(to_pair(row, layout or "pairs"), row=index))
        except RowError as error:
            errors.append(f"row {index}: {error.reason}")
    if not pairs:
        raise InputError("no usable preference pairs" + (f"; e.g. {errors[0]}" if errors else " (the input is empty)"))
    return pairs, errors, layout or "pairs"
