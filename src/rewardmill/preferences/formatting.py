"""Preference pairs for DPO from rated generations (seed 004's FormatChatGenerationDPO, and its text variant).

Chat rows: `messages` (the prompt conversation, with at least one user message), `generations`, `ratings`, and
optionally `generation_models`. Text rows: `instruction`, optional `system_prompt`, `generations`, `ratings`.
Each good row gives one or more output rows with every input column plus:
  prompt, prompt_id      the first user message, and the SHA-256 hex digest of its UTF-8 bytes (seed 004)
  chosen, rejected       the prompt messages followed by the assistant message (with `trl`: prompt = the prompt
                         messages, chosen/rejected = the assistant message alone, TRL's conversational format)
  chosen_rating, rejected_rating, and chosen_model, rejected_model when `generation_models` is present.
A row that gives no pair is never written as one: ties (no two ratings differ by more than `min_margin`) and rows
with fewer than two rated generations are skipped and counted; malformed rows (a length mismatch, no user message)
are per-row errors, counted with their reasons. `None`/NaN ratings are left out of the selection. Among equal best
(or worst) ratings the first in input order wins.
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionsError, RowError
from ..rows.shapes import UnreadableRow, validate_messages

STRATEGIES = ("best-worst", "best-random", "all-pairs", "top-k")
RATING_ERROR = "rating_error"  # the error column of the rating step, when `rewardmill dpo` rates rows first
SKIP_TIE = "tie: no two ratings differ by more than the margin"
SKIP_FEW = "fewer than two rated generations"


@dataclass(frozen=True)
class DPOColumns:
    messages: str = "messages"
    instruction: str = "instruction"
    system_prompt: str = "system_prompt"
    generations: str = "generations"
    generation_models: str = "generation_models"
    ratings: str = "ratings"


@dataclass(frozen=True)
class DPOOptions:
    """`strategy`: best-worst (seed 004), best-random (the best against a random lower-rated one), all-pairs (every
    pair whose ratings differ by more than `min_margin`) or top-k (the `k` pairs with the largest margins).
    Deterministic for a given `seed`."""

    strategy: str = "best-worst"
    min_margin: float = 0.0
    k: int = 1
    seed: int = 0
    trl: bool = False
    columns: DPOColumns = DPOColumns()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise OptionsError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.min_margin < 0 or self.k < 1:
            raise OptionsError("--min-margin must not be negative and -k must be at least 1")


@dataclass
class DPOSummary:
    rows: int = 0
    pairs: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> rows
    errors: list[str] = field(default_factory=list)  # every per-row error, "row N: reason"
    margins: list[float] = field(default_factory=list)

    def tally(self) -> dict[str, Any]:
        """This summary as JSON-able values (a committed chunk's tally)."""
        return {"rows": self.rows, "pairs": self.pairs, "skipped": dict(self.skipped), "errors": self.errors,
                "margins": self.margins}

    def add(self, tally: dict[str, Any]) -> None:
        """Count a chunk's tally in."""
        self.rows += tally["rows"]
        self.pairs += tally["pairs"]
        self.skipped.update(tally["skipped"])
        self.errors.extend(tally["errors"])
        self.margins.extend(tally["margins"])

    def margin_summary(self) -> str:
        if not self.margins:
            return "no pairs"
        values = sorted(self.margins)
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return f"min {values[0]:g}, quartiles {q[0]:g} / {q[1]:g} / {q[2]:g}, max {values[-1]:g}"


def prompt_id(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def _rating(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return value


def best_and_worst(ratings: list, rated: list[int]) -> tuple[int, int]:
    """The indices (among `rated`) of the best and the worst rating, the first in input order among equals."""
    return max(rated, key=lambda i: (ratings[i], -i)), min(rated, key=lambda i: (ratings[i], i))


def select_pairs(ratings: list[float | None], options: DPOOptions, rng: random.Random) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs; empty for a tie; raises RowError(SKIP_FEW) with fewer than two ratings."""
    rated = [i for i, r in enumerate(ratings) if r is not None]
    if len(rated) < 2:
        raise RowError(SKIP_FEW)
    margin = options.min_margin
    best, worst = best_and_worst(ratings, rated)
    if ratings[best] - ratings[worst] <= margin:
        return []
    if options.strategy == "best-worst":
        return [(best, worst)]
    if options.strategy == "best-random":
        lower = [i for i in rated if ratings[best] - ratings[i] > margin]
        return [(best, rng.choice(lower))]
    pairs = [(i, j) for i in rated for j in rated if ratings[i] - ratings[j] > margin]
    if options.strategy == "top-k":
        pairs = sorted(pairs, key=lambda p: -(ratings[p[0]] - ratings[p[1]]))[: options.k]
    return pairs


def system_message(row: dict, columns: DPOColumns) -> list[dict]:
    """A text row's system message: one only when `system_prompt` is a non-empty string, as in distilabel's
    FormatTextGenerationDPO (an empty string adds none); a value that is not a string is an error."""
    system = row.get(columns.system_prompt)
    if system is not None and not isinstance(system, str):
        raise RowError(f"field '{columns.system_prompt}' must be a string, got {type(system).__name__}")
    return [{"role": "system", "content": system}] if system else []


def _prompt(row: dict, columns: DPOColumns) -> tuple[list[dict], str]:
    """The prompt messages and the prompt text: the first user message, as distilabel's FormatChatGenerationDPO
    takes it."""
    if row.get(columns.messages) is not None:
        messages = validate_messages(list(row[columns.messages]), columns.messages, must_end_with="prompt")
    elif isinstance(row.get(columns.instruction), str):
        messages = [*system_message(row, columns), {"role": "user", "content": row[columns.instruction]}]
    else:
        raise RowError(f"missing field '{columns.messages}' (or '{columns.instruction}')")
    first_user = next((m["content"] for m in messages if m["role"] == "user"), None)
    if first_user is None:
        raise RowError(f"field '{columns.messages}' has no user message, so there is no prompt")
    return messages, first_user


def _list(row: dict, name: str) -> list:
    value = row.get(name)
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RowError(f"field '{name}' must be a list, got {'null' if value is None else type(value).__name__}")
    return list(value)


@dataclass(frozen=True)
class _Checked:
    """What a well-formed row gives its pairs from."""

    messages: list[dict]
    prompt: str
    generations: list[str]
    ratings_in: list  # as the row holds them
    ratings: list[float | None]  # those that count (None for a missing or NaN rating)
    models: list | None


def _checked(row: dict, options: DPOOptions) -> _Checked:
    """The row's prompt, generations, ratings and models; raises RowError for a malformed row."""
    columns = options.columns
    if isinstance(row, UnreadableRow):
        raise RowError(row.problem)
    messages, prompt = _prompt(row, columns)
    if row.get(columns.ratings) is None and row.get(RATING_ERROR):
        raise RowError(f"could not be rated: {str(row[RATING_ERROR]).split(': ', 1)[-1]}")
    generations = _list(row, columns.generations)
    ratings_in = _list(row, columns.ratings)
    if len(ratings_in) != len(generations):
        raise RowError(f"{len(generations)} generations but {len(ratings_in)} ratings")
    if not all(isinstance(g, str) for g in generations):
        raise RowError(f"every item of '{columns.generations}' must be a string")
    models = row.get(columns.generation_models)
    if models is not None:
        models = _list(row, columns.generation_models)
        if len(models) != len(generations):
            raise RowError(f"{len(generations)} generations but {len(models)} generation_models")
    return _Checked(messages, prompt, generations, ratings_in, [_rating(r) for r in ratings_in], models)


def _pair(row: dict, checked: _Checked, chosen: int, rejected: int, options: DPOOptions) -> dict:
    """The output row of one (chosen, rejected) pair of the row's generations."""
    messages, generations, models = checked.messages, checked.generations, checked.models
    new = dict(row)
    answer = {"role": "assistant"}
    new["prompt"] = messages if options.trl else checked.prompt
    new["prompt_id"] = prompt_id(checked.prompt)
    new["chosen"] = [{**answer, "content": generations[chosen]}] if options.trl else [
        *messages, {**answer, "content": generations[chosen]}]
    if models is not None:
        new["chosen_model"] = models[chosen]
    new["chosen_rating"] = checked.ratings_in[chosen]
    new["rejected"] = [{**answer, "content": generations[rejected]}] if options.trl else [
        *messages, {**answer, "content": generations[rejected]}]
    if models is not None:
        new["rejected_model"] = models[rejected]
    new["rejected_rating"] = checked.ratings_in[rejected]
    return new


def format_row(row: dict, index: int, options: DPOOptions) -> list[dict]:
    """The DPO rows of one input row (empty for a skipped row); raises RowError for a malformed row."""
    checked = _checked(row, options)
    pairs = select_pairs(checked.ratings, options, random.Random(f"{options.seed}:{index}"))
    return [_pair(row, checked, chosen, rejected, options) for chosen, rejected in pairs]


def example_pair(row: dict | None, options: DPOOptions) -> dict | None:
    """The output row that `row` would give as best-worst's pair at no margin (its best and its worst rated
    generation, one and the same in a tie; its first generation where none is rated): the columns and types of an
    output that has no pair. None for a malformed row or one without generations; for `row=None`, the pair columns
    alone, with numbers as ratings."""
    if row is None:
        messages = [{"role": "user", "content": ""}]
        return _pair({}, _Checked(messages, "", [""], [0.0], [0.0], None), 0, 0, options)
    try:
        checked = _checked(row, options)
    except RowError:
        return None
    ratings = checked.ratings
    rated = [i for i, r in enumerate(ratings) if r is not None]
    if rated:
        best, worst = best_and_worst(ratings, rated)
    elif checked.generations:
        best = worst = 0
    else:
        return None
    return _pair(row, checked, best, worst, options)


def format_dpo(rows: Iterable[dict], options: DPOOptions | None = None, summary: DPOSummary | None = None,
               first_row: int = 0, **option_values: Any) -> Iterator[dict]:
    """Stream DPO rows from rated rows; `summary` (when given) counts rows, pairs, skips by reason and errors.
    Options as a `DPOOptions` or as keywords: `format_dpo(rows, strategy="all-pairs", min_margin=1)`."""
    if options is not None and option_values:
        raise OptionsError("give DPO options either as a DPOOptions or as keywords, not both")
    options = options if options is not None else DPOOptions(**option_values)
    summary = summary if summary is not None else DPOSummary()
    for offset, row in enumerate(rows):
        index = first_row + offset
        summary.rows += 1
        try:
            produced = format_row(row, index, options)
        except RowError as error:
            if error.reason == SKIP_FEW:
                summary.skipped[SKIP_FEW] += 1
            else:
                summary.skipped["error"] += 1
                summary.errors.append(f"row {index}: {error.reason}")
            continue
        if not produced:
            summary.skipped[SKIP_TIE] += 1
        for pair in produced:
            summary.pairs += 1
            summary.margins.append(pair["chosen_rating"] - pair["rejected_rating"])
            yield pair


SCRATCH_MESSAGES = "__rewardmill_prompt_messages"


def with_prompt_messages(rows: Iterable[dict], columns: DPOColumns) -> Iterator[dict]:
    """Text rows (instruction [+ system_prompt]) given a messages column, so any scorer can rate them as
    messages + generations; chat rows pass through with their own messages."""
    for row in rows:
        if isinstance(row, dict) and not isinstance(row, UnreadableRow) and row.get(columns.messages) is None \
                and isinstance(row.get(columns.instruction), str):
            try:
                system = system_message(row, columns)
            except RowError:
                system = []  # rated without it; format_row then gives the row its error
            row = {**row, SCRATCH_MESSAGES: [*system, {"role": "user", "content": row[columns.instruction]}]}
        elif isinstance(row, dict) and not isinstance(row, UnreadableRow):
            row = {**row, SCRATCH_MESSAGES: row.get(columns.messages)}
        yield row


def without_scratch(rows: Iterable[dict]) -> Iterator[dict]:
    for row in rows:
        row.pop(SCRATCH_MESSAGES, None)
        yield row
