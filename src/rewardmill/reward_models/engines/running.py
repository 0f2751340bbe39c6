"""What every engine does around its own batch step: score identical rows once, read the adapter's outputs per
row, bisect a batch that raises down to the rows that fail, and put results back in input order."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from ...errors import RewardmillError
from ...scorer import Failure
from ..adapters.base import Encoded
from .protocol import Output, Result


class EngineFailure(RewardmillError, RuntimeError):
    """The engine itself broke (not one batch's rows): the run stops rather than failing every row."""


def read(outputs: dict[str, torch.Tensor]) -> list[Output]:
    """Per-row {output name: float} from the adapter's {output name: tensor [rows]} (one host copy each)."""
    columns = {name: values.detach().float().cpu().tolist() for name, values in outputs.items()}
    rows = len(next(iter(columns.values()))) if columns else 0
    return [{name: values[row] for name, values in columns.items()} for row in range(rows)]


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, a CPU allocation failure (MemoryError, or torch's RuntimeError saying so)."""
    if isinstance(error, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "failed to allocate" in text
                                                or "can't allocate memory" in text)


def settle(step: Callable[[list[Encoded]], list[Output]], items: Sequence[Encoded], indices: list[int],
           out_of_memory: Callable[[int], None] = lambda tokens: None) -> dict[int, Result]:
    """{index: result} of the batch `indices` of `items`. A batch that raises is split in half and each half
    retried, down to single items, so one bad row never takes its neighbours down; `out_of_memory` hears of each
    batch that ran out of memory (with its padded size in tokens) before it is split. An `EngineFailure` stops."""
    try:
        return dict(zip(indices, step([items[i] for i in indices])))
    except EngineFailure:
        raise
    except Exception as error:  # the model's own code may raise anything; a bug shows as every row failing
        memory = is_out_of_memory(error)
        if len(indices) == 1:
            what = "out of memory even alone" if memory else f"{type(error).__name__}: {error}"
            return {indices[0]: Failure(f"scoring failed ({len(items[indices[0]])} tokens): {what}")}
        if memory:
            out_of_memory(len(indices) * max(len(items[i]) for i in indices))
    half = len(indices) // 2
    return {**settle(step, items, indices[:half], out_of_memory), **settle(step, items, indices[half:], out_of_memory)}


def distinct(items: Sequence[Encoded]) -> tuple[list[Encoded], list[list[int]]]:
    """The distinct items of `items` (first copies, in order) and, for each, the indices of all its copies."""
    first: dict[tuple, int] = {}
    unique: list[Encoded] = []
    copies: list[list[int]] = []
    for index, item in enumerate(items):
        key = (tuple(item.input_ids), None if item.token_type_ids is None else tuple(item.token_type_ids))
        if key not in first:
            first[key] = len(unique)
            unique.append(item)
            copies.append([])
        copies[first[key]].append(index)
    return unique, copies


def settle_batches(plan: Callable[[Sequence[Encoded]], list[list[int]]],
                   step: Callable[[list[Encoded]], list[Output]], items: Sequence[Encoded],
                   out_of_memory: Callable[[int], None] = lambda tokens: None) -> Iterator[dict[int, Result]]:
    """{index in `items`: result} per batch that `plan` makes, each batch settled by `settle`. Identical items
    run once and share the result: the same row at two places of a batch, or in two batches, could differ in the
    last bits (the kernels block rows by position), and two equal answers must stay an exact tie."""
    unique, copies = distinct(items)
    for indices in plan(unique):
        settled = settle(step, unique, indices, out_of_memory)
        yield {index: copy.copy(result) for i, result in settled.items() for index in copies[i]}


def in_order(count: int, batches: Iterable[dict[int, Result]],
             on_batch: Callable[[list[int]], None] | None = None) -> list[Result]:
    """The results of `count` items gathered from their batches, in input order; `on_batch` hears of each batch."""
    results: list[Result | None] = [None] * count
    for settled in batches:
        for index, result in settled.items():
            results[index] = result
        if on_batch is not None:
            on_batch(list(settled))
    return results  # type: ignore[return-value]
