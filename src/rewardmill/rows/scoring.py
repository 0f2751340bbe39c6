"""The row layer: any `Scorer` over a stream of rows, chunk by chunk, with per-row errors.

Every consumer (the committed runs of `runs/`, local and on Ray, `calibrate`, the DPO pipeline and the reward
server's row requests) calls `score_row_chunks` or `score_rows` with whichever scorer it holds. Each chunk is read,
validated per row (`shapes.row_item`), scored in one `score_items` call, and folded back into rows that keep every
input column and gain the output and error columns. Rows are numbered from `RowOptions.first_row`, so a resumed run
names rows as an uninterrupted one would.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OptionsError, RowError
from ..scorer import Failure, Item, ItemResult, Progress, Scorer
from .shapes import (
    SINGLE_RESPONSE,
    Columns,
    RowItem,
    Shape,
    UnreadableRow,
    conversation_item,
    detect_shape,
    failed,
    first_shape,
    output_column,
    row_item,
    row_shape,
    shape_family,
    validate_messages,
)


@dataclass(frozen=True)
class RowOptions:
    """How rows are read and reported. `shape` None: detected per row among the shapes that share the first
    readable row's output column. `strict`: raise RowError at the first bad row instead of an error column.
    A resumed run numbers rows from `first_row` and detects shapes against `first_shape`, the first readable
    row's shape in the whole input, so it reads rows as an uninterrupted run would."""

    columns: Columns = Columns()
    shape: Shape | None = None
    strict: bool = False
    chunk_rows: int = 2048
    first_row: int = 0
    first_shape: Shape | None = None

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise OptionsError("chunk_rows must be at least 1")
        if self.first_row < 0:
            raise OptionsError("first_row must not be negative")


def score_row_chunks(
    scorer: Scorer, rows: Iterable[Any], options: RowOptions = RowOptions(), on_progress: Progress | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> Iterator[list[dict]]:
    """Score rows chunk by chunk; yields each chunk of output rows, in input order. `on_failure` receives the
    reason of every error that came from running the scorer (`scorer.Failure`), not from a row's content."""
    iterator = iter(rows)
    first = options.first_row
    family = (options.shape,) if options.shape is not None else None
    if family is None and options.first_shape is not None:
        family = shape_family(options.first_shape)
    report = on_progress or (lambda done: None)
    checked = False
    while chunk := list(itertools.islice(iterator, options.chunk_rows)):
        if family is None:
            family = shape_family(first_row_shape(chunk, options.columns))
        if not checked:
            _check_outputs_free(chunk, family, options.columns, scorer)
            checked = True
        yield _score_chunk(scorer, chunk, first, family, options, report, on_failure or (lambda reason: None))
        first += len(chunk)


def score_rows(
    scorer: Scorer, rows: Iterable[Any], options: RowOptions = RowOptions(), on_progress: Progress | None = None
) -> Iterator[dict]:
    """Score rows; yields each row with its output and error columns, in input order."""
    for chunk in score_row_chunks(scorer, rows, options, on_progress):
        yield from chunk


def _readable(row: Any) -> bool:
    return isinstance(row, dict) and not isinstance(row, UnreadableRow)


def first_row_shape(chunk: list, columns: Columns) -> Shape:
    """The shape of the first readable row."""
    for index, row in enumerate(chunk):
        if _readable(row):
            try:
                return first_shape(row, columns)
            except RowError as error:
                raise RowError(f"row {index}: {error.reason}") from None
    raise RowError(f"none of the first {len(chunk)} rows is a readable object")


def _output_names(scorer: Scorer) -> tuple[str, ...]:
    return (*scorer.output_names, *scorer.item_output_names)


def _check_outputs_free(chunk: list, family: Sequence[Shape], columns: Columns, scorer: Scorer) -> None:
    """Refuse an input that already holds a column the scorer would write."""
    row = next((r for r in chunk if _readable(r)), None)
    if row is None:
        return
    names = {output_column(n, shape, columns) for shape in family for n in _output_names(scorer)} | {columns.error}
    for name in sorted(names):
        if name in row:
            raise RowError(
                f"the input already has a '{name}' column; choose other output names "
                "(--score-column/--scores-column/--ratings-column/--error-column) so nothing is overwritten"
            )


@dataclass
class _Prepared:
    shape: Shape
    item: RowItem | None = None
    error: str | None = None


def _prepare(row: Any, label: str, family: Sequence[Shape], options: RowOptions) -> _Prepared:
    shape = row_shape(row, family, options.columns) if _readable(row) else family[0]
    try:
        found = row_item(row, shape, options.columns)
    except RowError as error:
        if options.strict:
            raise RowError(f"{label}: {error.reason}") from None
        return _Prepared(shape, error=f"{label}: {error.reason}")
    problem = next((e for e in found.errors if e), None)
    if options.strict and problem:
        raise RowError(f"{label}: {problem}")
    return _Prepared(shape, found)


def _score_chunk(scorer: Scorer, chunk: list, first: int, family: Sequence[Shape], options: RowOptions,
                 report: Progress, on_failure: Callable[[str], None]) -> list[dict]:
    prepared = [_prepare(row, f"row {first + r}", family, options) for r, row in enumerate(chunk)]
    scored = [p for p in prepared if p.item is not None and p.item.item.responses]
    report(float(len(prepared) - len(scored)))
    results = scorer.score_items([p.item.item for p in scored], on_progress=report) if scored else []
    if len(results) != len(scored):
        raise RuntimeError(f"{type(scorer).__name__} returned {len(results)} results for {len(scored)} items")
    by_row = {id(p): result for p, result in zip(scored, results)}
    out = []
    for r, (row, p) in enumerate(zip(chunk, prepared)):
        label = f"row {first + r}"
        if p.item is None:
            out.append(failed(row, p.shape, p.error or "", options.columns, _output_names(scorer)))
            continue
        result = _finite(by_row.get(id(p), ItemResult([], [])))
        for reason in (result.error, *result.errors):
            if isinstance(reason, Failure):
                on_failure(str(reason))
        folded = _fold(row, p.shape, p.item, result, scorer, options.columns, label)
        if options.strict and folded[options.columns.error]:
            raise RowError(folded[options.columns.error].split("; ")[0])
        out.append(folded)
    return out


NOT_A_NUMBER = "the scorer gave no finite number (a float16 overflow or a broken head does this)"


def _finite(result: ItemResult) -> ItemResult:
    """`result` with no NaN or infinity in its outputs: a response holding one fails, and an item output holding
    one is null and fails the item, each with a `Failure` naming the output (no output format holds them as
    numbers, and a NaN score would be read as a score)."""
    problems = [_non_finite(output) if output else None for output in result.outputs]
    item_problem = _non_finite(result.item_outputs)
    if not any(problems) and not item_problem:
        return result
    outputs = [None if problem else output for output, problem in zip(result.outputs, problems)]
    errors = [Failure(problem) if problem else error for error, problem in zip(result.errors, problems)]
    item_outputs = {name: None if _bad_number(value) else value for name, value in result.item_outputs.items()}
    error = result.error if result.error is not None or not item_problem else Failure(item_problem)
    return ItemResult(outputs, errors, item_outputs, error)


def _non_finite(outputs: dict[str, Any]) -> str | None:
    """'score is NaN: ...' for the first output that is or holds a NaN or an infinity, else None."""
    for name, value in outputs.items():
        found = _bad_number(value)
        if found:
            what = f"is {'NaN' if found == 'NaN' else 'infinite'}" if isinstance(value, float) else f"holds {found}"
            return f"{name} {what}: {NOT_A_NUMBER}"
    return None


def _bad_number(value: Any) -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else "NaN" if value != value else "an infinity"
    if isinstance(value, (list, tuple)):
        return next((found for found in map(_bad_number, value) if found), None)
    if isinstance(value, dict):
        return next((found for found in map(_bad_number, value.values()) if found), None)
    return None


def _fold(row: dict, shape: Shape, found: RowItem, result: ItemResult, scorer: Scorer, columns: Columns,
          label: str) -> dict:
    """A copy of `row` with every output column filled from the item's result, and the error column."""
    if len(result.outputs) != len(found.item.responses):
        raise RuntimeError(f"{type(scorer).__name__} returned {len(result.outputs)} outputs for "
                           f"{len(found.item.responses)} responses")
    single = shape in SINGLE_RESPONSE
    values: dict[str, list] = {name: [None] * found.size for name in scorer.output_names}
    errors = list(found.errors)
    if result.error is None:
        for j, position in enumerate(found.positions):
            output = result.outputs[j]
            if output is None:
                reason = result.errors[j] or f"{type(scorer).__name__} returned no output and no reason"
                errors[position] = f"{found.list_name}[{position}]: {reason}" if found.list_name else reason
                continue
            for name in scorer.output_names:
                values[name][position] = output[name]
    out = dict(row)
    for name in scorer.output_names:
        out[output_column(name, shape, columns)] = values[name][0] if single else values[name]
    for name in scorer.item_output_names:
        out[name] = result.item_outputs.get(name)
    problems = [f"{label}: {result.error}"] if result.error is not None else []
    problems += [f"{label}: {e}" for e in errors if e]
    out[columns.error] = "; ".join(problems) if problems else None
    return out


def as_item(value: Any) -> Item:
    """A conversation, an (instruction, response) tuple or a one-response row, as an item."""
    if isinstance(value, tuple) and len(value) == 2:
        value = {"instruction": value[0], "response": value[1]}
    if isinstance(value, list):
        return conversation_item(validate_messages(value, "conversation", must_end_with="assistant"))
    if isinstance(value, dict):
        shape = detect_shape(value)
        if shape not in SINGLE_RESPONSE:
            raise RowError(f"a {shape.value} row holds several responses; use score_rows()")
        return row_item(value, shape).item
    raise RowError(f"expected a conversation, a row or an (instruction, response) tuple, got {type(value).__name__}")


def score_inputs(scorer: Scorer, inputs: Sequence[Any]) -> list[dict[str, Any]]:
    """Every output of `scorer` for each input (see `as_item`); raises RowError naming the first bad input."""
    items = []
    for i, value in enumerate(inputs):
        try:
            items.append(as_item(value))
        except RowError as error:
            raise RowError(f"input {i}: {error.reason}") from None
    outputs = []
    for i, result in enumerate(scorer.score_items(items)):
        reason = result.error or result.errors[0]
        if reason or result.outputs[0] is None:
            raise RowError(f"input {i}: {reason or 'no output'}")
        outputs.append({**result.outputs[0], **result.item_outputs})
    return outputs
