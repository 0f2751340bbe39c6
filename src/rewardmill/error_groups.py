"""Per-row errors grouped by reason, so a summary can say "400 x over-long, 3 x wrong type" instead of listing the
first ten messages (where one real content error would hide among a thousand over-length rows).

A row's error reads "row N: reason"; the reason's key is the text after that prefix with its numbers written as
N, so the same problem on rows of different lengths counts as one. Groups are plain JSON (a committed chunk's
tally holds them), merged chunk by chunk, and keep the first few row numbers of each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_ROW = re.compile(r"^row (\d+): ")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
ROWS_KEPT = 5


def reason_key(message: str) -> str:
    """The error without its row prefix and with its numbers as N."""
    return _NUMBER.sub("N", _ROW.sub("", message, count=1))


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


def report_lines(groups: dict[str, dict[str, Any]], most: int = 10) -> list[str]:
    """One line per reason, most frequent first: count, an example message and the first rows it hit."""
    lines = []
    for entry in sorted(groups.values(), key=lambda e: -e["count"])[:most]:
        rows = ", ".join(str(r) for r in entry["rows"])
        more = ", ..." if entry["count"] > len(entry["rows"]) else ""
        where = f" (rows {rows}{more})" if rows else ""
        lines.append(f"{entry['count']} x {_ROW.sub('', entry['example'], count=1)}{where}")
    if len(groups) > most:
        lines.append(f"... and {len(groups) - most} other reasons")
    return lines
