"""Preference rows -> pairs (prompt, chosen, rejected, subset), from the layouts preference data comes in.

  pairs     `prompt` (a string or messages ending with the user's turn; also `conversation`, `messages` or
            `instruction`), `chosen` and `rejected` (strings, or message lists whose last turn is the answer), an
            optional `subset` (or `source`)
  hh-rlhf   `chosen` and `rejected` whole transcripts ("\\n\\nHuman: ..." / "\\n\\nAssistant: ..." turns) that share
            every turn but the last; the shared turns become the prompt
  llmbar    `input`, `output_1`, `output_2`, `label` (1 or 2 names the better output)

The layout is detected from the first readable row (or forced); a row that does not fit gets a per-row error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, RowError
from ..rows.shapes import UnreadableRow
from ..scorer import Message

LAYOUTS = ("pairs", "hh-rlhf", "llmbar")
PROMPT_COLUMNS = ("prompt", "conversation", "messages", "instruction")
_TURN = re.compile(r"\n\n(Human|Assistant): ")
_ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclass(frozen=True)
class Pair:
    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    subset: str
    row: int | None = None  # the input row it came from, numbered from 0 as in every error message


def parse_hh_transcript(text: str) -> list[Message] | None:
    """An hh-rlhf transcript as chat messages, or None unless it alternates cleanly from Human to Assistant.
    An empty turn before the last counts as unclean; an empty last Assistant turn is an empty answer, scored as
    RewardBench scores it (a few harmless-base transcripts end with an empty "Assistant: ")."""
    parts = _TURN.split(text)
    if parts[0] != "":
        return None
    roles, contents = parts[1::2], parts[2::2]
    expected = ["Human" if i % 2 == 0 else "Assistant" for i in range(len(roles))]
    if not roles or roles != expected or roles[-1] != "Assistant" or not all(c.strip() for c in contents[:-1]):
        return None
    return [{"role": _ROLES[r], "content": c} for r, c in zip(roles, contents)]


def detect_layout(row: Any) -> str:
    if not isinstance(row, dict) or isinstance(row, UnreadableRow):
        raise InputError("the first row is not a readable object, so the layout cannot be told; pass --layout")
    keys = set(row)
    if {"input", "output_1", "output_2", "label"} <= keys:
        return "llmbar"
    if {"chosen", "rejected"} <= keys:
        if keys & set(PROMPT_COLUMNS) or isinstance(row["chosen"], list):
            return "pairs"
        if isinstance(row["chosen"], str) and row["chosen"].startswith("\n\nHuman: "):
            return "hh-rlhf"
    raise InputError(
        f"cannot tell the layout of these rows (columns: {', '.join(sorted(keys)) or 'none'}). Looked for: "
        "pairs (prompt or conversation/messages/instruction, chosen, rejected), hh-rlhf (chosen and rejected "
        "transcripts with '\\n\\nHuman: ' turns), llmbar (input, output_1, output_2, label); "
        "pass --layout to force one")


def to_pair(row: Any, layout: str) -> Pair:
    """One row as a pair; RowError says what is wrong with it."""
    if isinstance(row, UnreadableRow):
        raise RowError(row.problem)
    if not isinstance(row, dict):
        raise RowError(f"a row must be an object, got {type(row).__name__}")
    if layout == "llmbar":
        return _llmbar(row)
    if layout == "hh-rlhf":
        return _hh(row)
    return _pairs(row)


def _subset(row: dict, default: str = "all") -> str:
    value = row.get("subset", row.get("source"))
    return str(value) if value not in (None, "") else default


def _text(value: Any, field: str, *, answer: bool = False) -> str:
    """A string; an empty prompt is an error, an empty answer is an answer (RewardBench scores it)."""
    if not isinstance(value, str):
        raise RowError(f"field '{field}' must be a string, got {type(value).__name__}")
    if not answer and not value.strip():
        raise RowError(f"field '{field}' is empty")
    return value


def _messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise RowError(f"field '{field}' must be a non-empty list of messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
            raise RowError(f"field '{field}'[{i}] must be a {{role, content}} message")
        out.append({"role": str(message["role"]), "content": message["content"]})
    return out


def _answer(value: Any, field: str) -> tuple[str, list[Message]]:
    """An answer given as a string, or as messages whose last one is the assistant's (the rest: its prompt)."""
    if isinstance(value, str):
        return _text(value, field, answer=True), []
    if not isinstance(value, list):
        raise RowError(f"field '{field}' must be a string or a list of messages, got "
                       f"{'nothing' if value is None else type(value).__name__}")
    messages = _messages(value, field)
    if messages[-1]["role"] != "assistant":
        raise RowError(f"field '{field}' must end with the assistant's answer, but its last turn is "
                       f"'{messages[-1]['role']}'")
    return _text(messages[-1]["content"], field, answer=True), messages[:-1]


def _pairs(row: dict) -> Pair:
    chosen, chosen_context = _answer(row.get("chosen"), "chosen")
    rejected, rejected_context = _answer(row.get("rejected"), "rejected")
    column = next((c for c in PROMPT_COLUMNS if row.get(c) is not None), None)
    if column is None:
        if not chosen_context:
            raise RowError(f"no prompt: expected one of the fields {', '.join(PROMPT_COLUMNS)}")
        if chosen_context != rejected_context:
            raise RowError("chosen and rejected conversations differ before their last turn")
        prompt = chosen_context
    elif isinstance(row[column], str):
        prompt = [{"role": "user", "content": _text(row[column], column)}]
    else:
        prompt = _messages(row[column], column)
    if prompt[-1]["role"] != "user":
        raise RowError(f"the prompt must end with the user's turn, but its last turn is '{prompt[-1]['role']}'")
    return Pair(tuple(prompt), chosen, rejected, _subset(row))


def _hh(row: dict) -> Pair:
    chosen = parse_hh_transcript(row.get("chosen")) if isinstance(row.get("chosen"), str) else None
    rejected = parse_hh_transcript(row.get("rejected")) if isinstance(row.get("rejected"), str) else None
    if chosen is None or rejected is None:
        which = "chosen" if chosen is None else "rejected"
        raise RowError(f"the {which} transcript does not alternate '\\n\\nHuman: ' and '\\n\\nAssistant: ' turns "
                       "ending with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise RowError("the chosen and rejected transcripts differ before their last Assistant turn")
    return Pair(tuple(chosen[:-1]), chosen[-1]["content"], rejected[-1]["content"], _subset(row))


def _llmbar(row: dict) -> Pair:
    label = row.get("label")
    if label not in (1, 2) or isinstance(label, bool):
        raise RowError(f"field 'label' must be 1 or 2, got {label!r}")
    first = _text(row.get("output_1"), "output_1", answer=True)
    second = _text(row.get("output_2"), "output_2", answer=True)
    chosen, rejected = (first, second) if label == 1 else (second, first)
    return Pair(({"role": "user", "content": _text(row.get("input"), "input")},), chosen, rejected, _subset(row))
