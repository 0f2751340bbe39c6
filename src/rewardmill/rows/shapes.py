"""Row shapes: recognise them per row, validate them, and turn a row into one scoring `Item`.

A row is a plain dict. These shapes are read (column names configurable through `Columns`):
  conversation              list of {role, content} ending with an assistant turn        -> score
  instruction + response    a user prompt and one answer                                  -> score
  instruction + responses   a user prompt and a list of answers                           -> scores (list)
  messages + generations    the prompt conversation and a list of generated answers       -> ratings (list)
  instruction + generations a user prompt and a list of generated answers (distilabel's
                            UltraFeedback inputs)                                         -> ratings (list)
  instructions              a list of instructions, rated on their own (complexity judge) -> scores (list)
Shapes that fill the same output column may mix in one file: a row whose `conversation` is missing or null is
read as instruction + response, and a row holding both is scored as instruction + response, as distilabel's
`RewardModelScore` does (seed 000). Problems are `RowError`s with a readable reason; the row layer
decides whether that aborts the run (`strict`) or lands in the row's error column. Knows nothing of models.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import RowError
from ..scorer import Conversation, Item

ROLES = ("system", "user", "assistant")


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
    instruction_generations = "instruction+generations"
    instructions = "instructions"


SHAPES = tuple(shape.value for shape in Shape)
# Tried in this order when a row could match several (a row with `responses` is not a one-response row; a row
# with instruction + response and a conversation is scored as the pair, as distilabel's RewardModelScore does).
DETECTION_ORDER = (Shape.messages_generations, Shape.instruction_generations, Shape.instruction_responses,
                   Shape.instruction_response, Shape.conversation, Shape.instructions)
SINGLE_RESPONSE = (Shape.conversation, Shape.instruction_response)
RATED_GENERATIONS = (Shape.messages_generations, Shape.instruction_generations)
# Shapes that write the same output column, and so may mix row by row.
FAMILIES = (SINGLE_RESPONSE, RATED_GENERATIONS)


@dataclass(frozen=True)
class Columns:
    """Column names, all configurable. Inputs first, then the output columns."""

    conversation: str = "conversation"
    instruction: str = "instruction"
    response: str = "response"
    responses: str = "responses"
    messages: str = "messages"
    generations: str = "generations"
    instructions: str = "instructions"
    score: str = "score"
    scores: str = "scores"
    ratings: str = "ratings"
    error: str = "error"

    def inputs_of(self, shape: Shape) -> tuple[str, ...]:
        return {
            Shape.conversation: (self.conversation,),
            Shape.instruction_response: (self.instruction, self.response),
            Shape.instruction_responses: (self.instruction, self.responses),
            Shape.messages_generations: (self.messages, self.generations),
            Shape.instruction_generations: (self.instruction, self.generations),
            Shape.instructions: (self.instructions,),
        }[shape]

    def output_for(self, shape: Shape) -> str:
        return {
            Shape.conversation: self.score,
            Shape.instruction_response: self.score,
            Shape.instruction_responses: self.scores,
            Shape.messages_generations: self.ratings,
            Shape.instruction_generations: self.ratings,
            Shape.instructions: self.scores,
        }[shape]


def _present(row: Mapping, name: str) -> bool:
    return name in row and row[name] is not None


def _shape_error(keys: Sequence[str], columns: Columns) -> RowError:
    return RowError(
        f"cannot tell the row shape from columns {sorted(keys)}: expected '{columns.conversation}', "
        f"'{columns.instruction}' + '{columns.response}', '{columns.instruction}' + '{columns.responses}', "
        f"'{columns.messages}' or '{columns.instruction}' + '{columns.generations}', or '{columns.instructions}' "
        "(column names are configurable, see --help)"
    )


def detect_shape(row: Mapping, columns: Columns = Columns(), among: Sequence[Shape] = DETECTION_ORDER) -> Shape:
    """The first shape of `among`, in `DETECTION_ORDER`, whose input fields the row holds; a null value counts as
    missing."""
    for shape in sorted(among, key=DETECTION_ORDER.index):
        if all(_present(row, name) for name in columns.inputs_of(shape)):
            return shape
    raise _shape_error(list(row), columns)


def shape_family(shape: Shape) -> tuple[Shape, ...]:
    """The shapes that write the same output column as `shape`, `shape` first: they may mix row by row."""
    for family in FAMILIES:
        if shape in family:
            return (shape, *(s for s in family if s is not shape))
    return (shape,)


def first_shape(row: Mapping, columns: Columns) -> Shape:
    """The shape of a file's first readable row: by the values it holds, else by its column names alone
    (so a first row with a null `conversation` still reads as a conversation row and gets a per-row error)."""
    try:
        return detect_shape(row, columns)
    except RowError:
        for shape in DETECTION_ORDER:
            if all(name in row for name in columns.inputs_of(shape)):
                return shape
        raise


def row_shape(row: Mapping, family: Sequence[Shape], columns: Columns) -> Shape:
    """This row's shape among `family`; a row matching none is validated as the family's first shape,
    which names what is missing."""
    try:
        return detect_shape(row, columns, among=family)
    except RowError:
        return family[0]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _maybe_json_list(value: Any, name: str) -> Any:
    # CSV cells cannot hold lists; a cell holding a JSON list is read as that list.
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise RowError(f"field '{name}' holds the text {shown!r}, which is not a JSON list; a CSV cell must hold "
                           'a list as JSON, with double quotes: ["a", "b"], not [\'a\', \'b\']') from None
    return value


def _field(row: Mapping, name: str) -> Any:
    if not _present(row, name):
        raise RowError(f"missing field '{name}'")
    return row[name]


def _string(row: Mapping, name: str) -> str:
    value = _field(row, name)
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {_type_name(value)}")
    return value


def _list(row: Mapping, name: str) -> list:
    value = _maybe_json_list(_field(row, name), name)
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy / arrow arrays
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RowError(f"field '{name}' must be a list, got {_type_name(value)}")
    return list(value)


# ShareGPT writes {"from": "human" | "gpt" | "system", "value": ...}; read it as {"role", "content"}.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI-style content parts whose text parts are joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                shown = repr(kind) if kind else f"a {_type_name(part)}"
                raise RowError(f"{where} content part {j} is {shown}, not text; only text can be scored")
            texts.append(part["text"])
        return "\n".join(texts)
    raise RowError(f"{where} content must be a string, got {_type_name(content)}")


def validate_messages(value: list, name: str, *, must_end_with: str | None) -> Conversation:
    """Check a list of {role, content} messages (ShareGPT's {from, value} and OpenAI content parts are read
    too); return clean {role, content} copies."""
    if not value:
        raise RowError(f"field '{name}' is an empty conversation")
    clean: Conversation = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, dict):
            raise RowError(f"{where} must be an object with 'role' and 'content', got {_type_name(message)}")
        if "role" not in message and "from" in message:
            role = SHAREGPT_ROLES.get(message["from"])
            if role is None:
                raise RowError(f"{where} has unknown ShareGPT speaker {message['from']!r} "
                               f"(expected one of {', '.join(SHAREGPT_ROLES)})")
            content = message.get("value")
        else:
            role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(f"{where} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
        clean.append({"role": role, "content": _content(content, where)})
    last = clean[-1]["role"]
    if must_end_with == "assistant" and last != "assistant":
        raise RowError(f"field '{name}' must end with an assistant turn, but its last turn is '{last}'")
    if must_end_with == "prompt" and last == "assistant":
        raise RowError(f"field '{name}' is the prompt and must not end with an assistant turn")
    return clean


def conversation_item(conversation: Conversation) -> Item:
    """A validated conversation (ending with an assistant turn) as a one-response item."""
    *prompt, answer = conversation
    return Item(tuple(prompt), (answer["content"],))


@dataclass
class RowItem:
    """A row read as one item. `positions[j]` is where item response j sits in the row's list of `size`
    responses; a response that is not a string has no place in the item and a reason in `errors`."""

    item: Item
    size: int
    positions: list[int]
    errors: list[str | None] = field(default_factory=list)
    list_name: str | None = None  # the list column, for rows with several responses


def row_item(row: Any, shape: Shape, columns: Columns = Columns()) -> RowItem:
    """Validate a row of `shape` and return it as an item. Raises RowError for a bad row."""
    if isinstance(row, UnreadableRow):
        raise RowError(row.problem)
    if not isinstance(row, dict):
        raise RowError(f"row must be an object, got {_type_name(row)}")
    if shape is Shape.conversation:
        conversation = validate_messages(_list(row, columns.conversation), columns.conversation,
                                         must_end_with="assistant")
        return RowItem(conversation_item(conversation), 1, [0], [None])
    if shape is Shape.instruction_response:
        prompt = ({"role": "user", "content": _string(row, columns.instruction)},)
        return RowItem(Item(prompt, (_string(row, columns.response),)), 1, [0], [None])
    if shape in (Shape.instruction_responses, Shape.instruction_generations):
        prompt = ({"role": "user", "content": _string(row, columns.instruction)},)
        name = columns.responses if shape is Shape.instruction_responses else columns.generations
        candidates = _list(row, name)
    elif shape is Shape.instructions:  # the texts rated are the instructions themselves: no prompt
        prompt, (candidates, name) = (), (_list(row, columns.instructions), columns.instructions)
    else:
        messages = validate_messages(_list(row, columns.messages), columns.messages, must_end_with="prompt")
        prompt, (candidates, name) = tuple(messages), (_list(row, columns.generations), columns.generations)
    texts, positions, errors = [], [], []
    for i, text in enumerate(candidates):
        if isinstance(text, str):
            texts.append(text)
            positions.append(i)
            errors.append(None)
        else:
            errors.append(f"{name}[{i}] must be a string, got {_type_name(text)}")
    return RowItem(Item(prompt, tuple(texts)), len(candidates), positions, errors, list_name=name)


def output_column(name: str, shape: Shape, columns: Columns) -> str:
    """Where a per-response output lands: "score" in the shape's column, others under their own names."""
    return columns.output_for(shape) if name == "score" else name


def failed(row: Any, shape: Shape | None, reason: str, columns: Columns, names: Sequence[str] = ("score",)) -> dict:
    """The output row for a row that could not be scored at all: every output null, the reason in the error."""
    out = dict(row) if isinstance(row, dict) else {"input": row}
    if shape is not None:
        for name in names:
            out[output_column(name, shape, columns)] = None
    out[columns.error] = reason
    return out
