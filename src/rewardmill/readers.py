"""Read rows from JSONL (also gzipped), JSON, CSV, Parquet, a saved `datasets` directory or a hub dataset id.

Readers stream plain dict rows (JSON arrays are the exception: they are parsed whole). The format comes from the
name and is checked against the file's first bytes, so a Parquet or gzip file under another name is named as
what it is. An empty file has no rows.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .rows import UnreadableRow

_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_MAGIC = {b"PAR1": "Parquet", b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "zip"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class RowSource:
    rows: Iterator[dict]
    total: int | None


def input_format(path: Path) -> str:
    if path.is_dir():
        return "dataset"
    name = path.name.lower()
    gzipped = name.endswith((".jsonl.gz", ".ndjson.gz"))
    suffix = ".jsonl" if gzipped else path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(f"{path}: unknown input format; expected one of .jsonl .jsonl.gz .json .csv .parquet, "
                         "a datasets directory or a hub dataset id")
    fmt = _SUFFIXES[suffix]
    with open(path, "rb") as handle:
        head = handle.read(4)
    found = next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)
    expected = {"parquet": "Parquet"}.get(fmt, "gzip-compressed" if gzipped else None)
    if found != expected and head:
        what = f"a {found} file" if found else "not a Parquet file" if fmt == "parquet" else "plain text"
        raise InputError(f"{path} is {what}, but its name says {suffix + ('.gz' if gzipped else '')}; "
                         "rename it to match its content (.parquet, .jsonl.gz, .jsonl, .json or .csv)")
    return fmt


def looks_like_hub_id(name: str) -> bool:
    """user/name, not a local path and not named like a data file."""
    known = (*_SUFFIXES, ".gz")
    return bool(_HUB_ID.match(name)) and not name.lower().endswith(known) and not Path(name).exists()


def read_rows(path: str | Path, *, split: str | None = None) -> RowSource:
    """Open `path` and return its rows as a stream, with the row count when it is known cheaply."""
    if looks_like_hub_id(str(path)):
        return _read_hub_dataset(str(path), split)
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    fmt = input_format(path)
    if fmt != "dataset" and path.stat().st_size == 0:
        return RowSource(iter(()), 0)
    if fmt == "jsonl":
        total = None if path.suffix.lower() == ".gz" else _count_lines(path)
        return RowSource(_read_jsonl(path), total)
    if fmt == "json":
        rows = _read_json(path)
        return RowSource(iter(rows), len(rows))
    if fmt == "csv":
        return RowSource(_read_csv(path), None)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        return RowSource(_batches_to_rows(file.iter_batches(batch_size=1024)), file.metadata.num_rows)
    return _read_dataset(path, split)


def _count_lines(path: Path) -> int:
    """Non-blank lines, for the progress bar's total (a fast pass over the bytes)."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            count += bool(line.strip())
    return count


def _read_jsonl(path: Path) -> Iterator[dict]:
    """One row per non-blank line (see `parse_line`)."""
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield parse_line(raw, number)


def parse_line(raw: bytes, number: int) -> dict:
    """A JSONL line as a row; a line that is not UTF-8, not JSON, too deeply nested or not an object becomes an
    `UnreadableRow` (that row's error), never a crash of the whole run."""
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as error:
        return UnreadableRow(f"line {number} is not valid UTF-8 (byte {error.start})", line=number)
    except json.JSONDecodeError as error:
        return UnreadableRow(f"line {number} is not valid JSON ({error.msg})", line=number)
    except RecursionError:
        return UnreadableRow(f"line {number} is JSON nested too deeply to read", line=number)
    if not isinstance(value, dict):
        return UnreadableRow(f"line {number} is a JSON {type(value).__name__}, not an object", line=number)
    return value


def _read_json(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"rows": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of rows")
    return data


def _read_csv(path: Path) -> Iterator[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _batches_to_rows(batches) -> Iterator[dict]:
    for batch in batches:
        yield from batch.to_pylist()


def _read_dataset(path: Path, split: str | None) -> RowSource:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:
        raise InputError(f"{path}: not a saved datasets directory ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise InputError(f"{path} holds splits {', '.join(loaded)}; choose one with --split")
            split = next(iter(loaded))
        if split not in loaded:
            raise InputError(f"{path} has no split {split!r}; it has {', '.join(loaded)}")
        loaded = loaded[split]
    arrow = loaded.data.table
    return RowSource(_batches_to_rows(arrow.to_batches(max_chunksize=1024)), loaded.num_rows)


def _read_hub_dataset(name: str, split: str | None) -> RowSource:
    """A dataset on the Hugging Face hub, streamed split by split through `datasets` (nothing is held whole)."""
    import datasets

    from . import hub

    if not hub.offline_mode() and not hub.hub_reachable():
        raise InputError(f"{name}: not a local file, and the Hugging Face hub ({hub.endpoint()}) cannot be reached "
                         "to read it as a hub dataset; pass a local path")
    try:
        loaded = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as error:
        raise InputError(f"{name}: not a local file, and it could not be read as a hub dataset ({error}); "
                         "pass a local path, or check the dataset id and your network") from None
    if isinstance(loaded, (datasets.IterableDatasetDict, datasets.DatasetDict)):
        if len(loaded) != 1:
            raise InputError(f"{name} holds splits {', '.join(loaded)}; choose one with --split")
        split, loaded = next(iter(loaded.items()))
    info = getattr(loaded, "info", None)
    splits = getattr(info, "splits", None) or {}
    total = splits[split].num_examples if split in splits else None
    return RowSource(iter(loaded), total)
