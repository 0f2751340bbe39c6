"""Per-row errors grouped by reason, so a summary can say "400 x over-long, 3 x wrong type" instead of listing the
first ten messages (where one real content error would hide among a thousand over-length rows).

A row's error reads "row N: reason" (several problems of one row are joined by "; row N: "); the reason's key is
the text after that prefix with its numbers written as N, each distinct problem once, so the same problem on rows
of different lengths, or on one or three items of a row, counts as one. Groups are plain JSON (a committed
chunk's tally holds them), merged chunk by chunk, and keep the first few row numbers of each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_ROW = re.compile(r"^row (\d+): ")
_NEXT_PROBLEM = re.compile(r"; row \d+: ")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
ROWS_KEPT = 5


def reason_key(message: str) -> str:
    """The error without its row prefixes, its numbers as N and each distinct problem once."""
    problems = _NEXT_PROBLEM.split(_ROW.sub("", message, count=1))
    return "; ".join(dict.fromkeys(_NUMBER.sub("N", problem) for problem in problems))


def row_number(message: str) -> int | None:
    match = _ROW.match(message)
    return int(match.group(1)) if match else None


def group(messages: Iterable[str]) -> dict[str, dict[str, Any]]:
    """reason -> {"count", "rows" (the first few row numbers), "example" (the first whole message)}."""
    groups: dict[str, dict[str, Any]] = {}
    for message in messages:
        entry = groups.setdefault(reason_key(message), {"count": 0, "rows": [], "example": message})
        entry["count"] += 1
        number = row_number(message)
        if number is not None and len(entry["rows"]) < ROWS_KEPT:
            entry["rows"].append(number)
    return groups


def merge(into: dict[str, dict[str, Any]], more: dict[str, dict[str, Any]]) -> None:
    """Add the groups `more` (a later chunk's) to `into`, in place."""
    for key, entry in more.items():
        mine = into.setdefault(key, {"count": 0, "rows": [], "example": entry["example"]})
        mine["count"] += entry["count"]
        mine["rows"] = (mine["rows"] + entry["rows"])[:ROWS_KEPT]


def ranked(groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups most frequent first, each as {"count", "reason" (its first message without the row prefix),
    "rows" (the first few row numbers)}."""
    return [{"count": e["count"], "reason": _ROW.sub("", e["example"], count=1), "rows": e["rows"]}
            for e in sorted(groups.values(), key=lambda e: -e["count"])]


def rows_text(entry: dict[str, Any]) -> str:
    """'row 7', 'rows 0, 4' or 'rows 7, 10, 11, 12, 13, ...' (when there are more than those kept)."""
    if not entry["rows"]:
        return ""
    more = ", ..." if entry["count"] > len(entry["rows"]) else ""
    return f"row{'s' if len(entry['rows']) > 1 or more else ''} {', '.join(map(str, entry['rows']))}{more}"


def line(entry: dict[str, Any]) -> str:
    """A ranked group as '11 x reason (rows 7, 10, ...)'."""
    where = rows_text(entry)
    return f"{entry['count']} x {entry['reason']}{f' ({where})' if where else ''}"


def report_lines(groups: dict[str, dict[str, Any]], most: int = 10) -> list[str]:
    """One line per reason, most frequent first: count, an example message and the first rows it hit."""
    lines = [line(entry) for entry in ranked(groups)[:most]]
    if len(groups) > most:
        lines.append(f"... and {len(groups) - most} other reasons")
    return lines
