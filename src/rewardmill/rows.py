"""Row shapes: recognise them, validate them, turn rows into conversations and fold scores back.

A row is a plain dict. Each supported shape maps to one or more *items* (a conversation ending with an
assistant turn); a scorer turns items into scores, and `fold` puts them back into the row under the
output column of its shape. Problems are reported as `RowError` with a human-readable reason; the
caller decides whether that aborts the run (`--strict`) or lands in the row's error column.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

Message = dict[str, str]
Conversation = list[Message]

ROLES = ("system", "user", "assistant")


class RowError(ValueError):
    """A row (or one item of it) cannot be scored; `reason` says why, without the row number."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnreadableRow(dict):
    """A source record that could not be parsed into a row; it is reported as that row's error."""

    def __init__(self, problem: str, **fields: Any):
        super().__init__(fields)
        self.problem = problem


class Shape(str, enum.Enum):
    conversation = "conversation"
    instruction_response = "instruction+response"
    instruction_responses = "instruction+responses"
    messages_generations = "messages+generations"


@dataclass(frozen=True)
class Columns:
    """Column names, all configurable. Inputs first, then the output columns."""

    conversation: str = "conversation"
    instruction: str = "instruction"
    response: str = "response"
    responses: str = "responses"
    messages: str = "messages"
    generations: str = "generations"
    score: str = "score"
    scores: str = "scores"
    ratings: str = "ratings"
    error: str = "error"

    def output_for(self, shape: Shape) -> str:
        return {
            Shape.conversation: self.score,
            Shape.instruction_response: self.score,
            Shape.instruction_responses: self.scores,
            Shape.messages_generations: self.ratings,
        }[shape]



def detect_shape(keys: set[str] | list[str], columns: Columns = Columns()) -> Shape:
    """Pick the row shape from the column names present (first match wins)."""
    keys = set(keys)
    if columns.conversation in keys:
        return Shape.conversation
    if columns.messages in keys and columns.generations in keys:
        return Shape.messages_generations
    if columns.instruction in keys and columns.responses in keys:
        return Shape.instruction_responses
    if columns.instruction in keys and columns.response in keys:
        return Shape.instruction_response
    raise RowError(
        f"cannot tell the row shape from columns {sorted(keys)}: expected '{columns.conversation}', "
        f"'{columns.instruction}' + '{columns.response}', '{columns.instruction}' + '{columns.responses}', "
        f"or '{columns.messages}' + '{columns.generations}' (column names are configurable, see --help)"
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _maybe_json_list(value: Any) -> Any:
    # CSV cells cannot hold lists; a cell holding a JSON list is read as that list.
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _field(row: dict, name: str) -> Any:
    if name not in row or row[name] is None:
        raise RowError(f"missing field '{name}'")
    return row[name]


def _string(row: dict, name: str) -> str:
    value = _field(row, name)
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {_type_name(value)}")
    return value


def _list(row: dict, name: str) -> list:
    value = _maybe_json_list(_field(row, name))
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy / arrow arrays
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RowError(f"field '{name}' must be a list, got {_type_name(value)}")
    return list(value)


def validate_messages(value: list, name: str, *, must_end_with: str | None) -> Conversation:
    """Check a list of {role, content} messages; return clean copies."""
    if not value:
        raise RowError(f"field '{name}' is an empty conversation")
    clean: Conversation = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, dict):
            raise RowError(f"{where} must be an object with 'role' and 'content', got {_type_name(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(f"{where} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise RowError(f"{where} content must be a string, got {_type_name(content)}")
        clean.append({"role": role, "content": content})
    last = clean[-1]["role"]
    if must_end_with == "assistant" and last != "assistant":
        raise RowError(f"field '{name}' must end with an assistant turn, but its last turn is '{last}'")
    if must_end_with == "prompt" and last == "assistant":
        raise RowError(f"field '{name}' is the prompt and must not end with an assistant turn")
    return clean


@dataclass
class RowItems:
    """The conversations of one row; `item_errors[i]` is set where item i itself is bad."""

    conversations: list[Conversation | None]
    item_errors: list[str | None]


def row_items(row: dict, shape: Shape, columns: Columns = Columns()) -> RowItems:
    """Validate a row of `shape` and return its conversations. Raises RowError for a bad row."""
    if isinstance(row, UnreadableRow):
        raise RowError(row.problem)
    if not isinstance(row, dict):
        raise RowError(f"row must be an object, got {_type_name(row)}")
    if shape is Shape.conversation:
        conv = validate_messages(_list(row, columns.conversation), columns.conversation, must_end_with="assistant")
        return RowItems([conv], [None])
    if shape is Shape.instruction_response:
        instruction = _string(row, columns.instruction)
        response = _string(row, columns.response)
        return RowItems([_two_turns(instruction, response)], [None])

    if shape is Shape.instruction_responses:
        prompt: Conversation = [{"role": "user", "content": _string(row, columns.instruction)}]
        candidates, name = _list(row, columns.responses), columns.responses
    else:
        prompt = validate_messages(_list(row, columns.messages), columns.messages, must_end_with="prompt")
        candidates, name = _list(row, columns.generations), columns.generations
    conversations: list[Conversation | None] = []
    errors: list[str | None] = []
    for i, text in enumerate(candidates):
        if isinstance(text, str):
            conversations.append([*prompt, {"role": "assistant", "content": text}])
            errors.append(None)
        else:
            conversations.append(None)
            errors.append(f"{name}[{i}] must be a string, got {_type_name(text)}")
    return RowItems(conversations, errors)


def _two_turns(instruction: str, response: str) -> Conversation:
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def output_column(name: str, shape: Shape, columns: Columns) -> str:
    """Where an adapter output lands: "score" in the shape's column, others under their own names."""
    return columns.output_for(shape) if name == "score" else name


def fold(
    row: dict,
    shape: Shape,
    outputs: list[dict[str, float] | None],
    names: tuple[str, ...],
    errors: list[str | None],
    columns: Columns,
) -> dict:
    """Return a copy of `row` with each output column (and the error column) filled from item results."""
    out = dict(row)
    single = shape in (Shape.conversation, Shape.instruction_response)
    for name in names:
        values = [None if result is None else result[name] for result in outputs]
        out[output_column(name, shape, columns)] = values[0] if single else values
    problems = [e for e in errors if e]
    out[columns.error] = "; ".join(problems) if problems else None
    return out


def failed(row: Any, shape: Shape | None, reason: str, columns: Columns, names: tuple[str, ...] = ("score",)) -> dict:
    """The output row for a row that could not be scored at all."""
    out = dict(row) if isinstance(row, dict) else {"input": row}
    if shape is not None:
        for name in names:
            out[output_column(name, shape, columns)] = None
    out[columns.error] = reason
    return out
