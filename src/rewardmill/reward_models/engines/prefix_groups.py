"""Which rows of a batch share a prefix worth computing once: the grouping of prefix-shared scoring.

Rows are sorted by their token ids, so rows that share a prefix sit next to each other, whatever produced them
(the pair of one input row, the generations of one row, separate rows with the same prompt, the queries of one
GRPO group sent to the server). A run of neighbours is one group when that saves the most tokens; a run whose
rows share less than `min_shared` tokens is split where they differ first, and each part is considered again.
A group never grows past `max_tokens` computed tokens: a larger one is cut into consecutive groups that each
repeat the prefix. Pure Python on token ids: no torch, no model.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..adapters.batching import Group

# The least shared tokens worth grouping, measured (docs/benchmarks.md, "Threshold" and "Grouped rows piece by
# piece"). Where a group's attention runs piece by piece (unpadded batches: each continuation's queries on the
# prefix's keys and its own), grouping costs no attention work, and sharing pays from the first token; under a
# block mask (padded rows, flex attention) every row of the group pays for the whole group's width, which shorter
# prefixes do not repay.
MIN_SHARED_PIECES = 1
MIN_SHARED_MASKED = 32


def default_min_shared(pieces: bool) -> int:
    """The grouping threshold for an engine whose grouped rows run their attention piece by piece, or not."""
    return MIN_SHARED_PIECES if pieces else MIN_SHARED_MASKED


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` share, never all of either (each keeps its own last token)."""
    limit = min(len(a), len(b)) - 1
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def find_groups(rows: Sequence[Sequence[int]], min_shared: int, max_tokens: int) -> list[Group]:
    """Every row in exactly one `Group` (a row that shares nothing is a group of one with `shared` 0).

    Groups come in sorted order of their rows' ids, members sorted too, so that the same rows give the same
    groups whatever order they came in."""
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    shared = [common_prefix(rows[a], rows[b]) for a, b in zip(order, order[1:])]
    groups: list[Group] = []
    for lo, hi, prefix in _runs(shared, 0, len(order), min_shared, 0):
        groups.extend(_cut([order[i] for i in range(lo, hi)], prefix, rows, max_tokens, min_shared))
    return groups


MAX_DEPTH = 48  # splits within splits; deeper (hostile chains of ever longer prefixes) a run is taken whole


def _runs(shared: list[int], lo: int, hi: int, min_shared: int, depth: int) -> list[tuple[int, int, int]]:
    """The sorted rows lo..hi-1 as runs (lo, hi, shared prefix), chosen for the most tokens saved: one run,
    or split at the places where neighbours share least, each part split again if that saves more."""
    if hi - lo <= 1:
        return [(lo, hi, 0)] if hi > lo else []
    least = min(shared[lo:hi - 1])
    if depth >= MAX_DEPTH:
        return [(lo, hi, least)] if least >= min_shared else [(i, i + 1, 0) for i in range(lo, hi)]
    parts, start = [], lo
    for i in range(lo, hi - 1):
        if shared[i] == least:
            parts.append((start, i + 1))
            start = i + 1
    parts.append((start, hi))
    split = [run for a, b in parts for run in _runs(shared, a, b, min_shared, depth + 1)]
    if least < min_shared:
        return split
    whole = (hi - lo - 1) * least
    saved = sum((b - a - 1) * prefix for a, b, prefix in split if prefix)
    return [(lo, hi, least)] if whole >= saved else split


def _cut(members: list[int], shared: int, rows: Sequence[Sequence[int]], max_tokens: int,
         min_shared: int) -> list[Group]:
    """Consecutive groups of `members`, each at most `max_tokens` computed tokens (a member alone may be more)."""
    if shared < min_shared or len(members) == 1:
        return [Group(0, (m,)) for m in members]
    groups, current, tokens = [], [], shared
    for member in members:
        rest = len(rows[member]) - shared
        if current and tokens + rest > max_tokens:
            groups.append(current)
            current, tokens = [], shared
        current.append(member)
        tokens += rest
    groups.append(current)
    return [Group(shared, tuple(g)) if len(g) > 1 else Group(0, (g[0],)) for g in groups]

