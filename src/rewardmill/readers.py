"""Read rows from JSONL, JSON, CSV, Parquet or a saved `datasets` directory; write JSONL, Parquet or CSV.

Readers stream plain dict rows (JSON arrays are the exception: they are parsed whole). Writers take rows
in chunks and pick the format from the output file's extension.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RewardmillError
from .rows import UnreadableRow

_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class InputError(RewardmillError, ValueError):
    """The input file cannot be read as a table of rows."""


@dataclass
class RowSource:
    rows: Iterator[dict]
    total: int | None


def input_format(path: Path) -> str:
    if path.is_dir():
        return "dataset"
    suffix = path.suffix.lower()
    if suffix == ".gz" and path.name.lower().endswith((".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    if suffix not in _SUFFIXES:
        raise InputError(f"{path}: unknown input format; expected one of .jsonl .json .csv .parquet or a datasets directory")
    return _SUFFIXES[suffix]


def read_rows(path: str | Path, *, split: str | None = None) -> RowSource:
    """Open `path` and return its rows as a stream, with the row count when it is known cheaply."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    fmt = input_format(path)
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
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield UnreadableRow(f"line {number} is not valid JSON ({error.msg})", line=number)
                continue
            if not isinstance(value, dict):
                yield UnreadableRow(f"line {number} is a JSON {type(value).__name__}, not an object", line=number)
                continue
            yield value


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


# ----------------------------------------------------------------------------- writers


def output_format(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt not in ("jsonl", "parquet", "csv"):
        raise InputError(f"{path}: unknown output format; use a .jsonl, .parquet or .csv file name")
    return fmt


class Writer:
    """Writes chunks of rows to `path` in the format its extension names. Use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = output_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = None
        self._parquet = None
        self._csv = None
        if self.format in ("jsonl", "csv"):
            self._handle = open(self.path, "w", encoding="utf-8", newline="")

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.format == "jsonl":
            for row in rows:
                self._handle.write(json.dumps(row, ensure_ascii=False, default=_default) + "\n")
        elif self.format == "csv":
            self._write_csv(rows)
        else:
            self._write_parquet(rows)

    def _write_csv(self, rows: list[dict]) -> None:
        if self._csv is None:
            names: dict[str, None] = {}
            for row in rows:
                names.update(dict.fromkeys(row))
            self._csv = csv.DictWriter(self._handle, fieldnames=list(names), extrasaction="raise")
            self._csv.writeheader()
        for row in rows:
            cells = {k: json.dumps(v, ensure_ascii=False, default=_default) if isinstance(v, (list, dict)) else v
                     for k, v in row.items()}
            try:
                self._csv.writerow(cells)
            except ValueError:
                extra = sorted(set(row) - set(self._csv.fieldnames))
                raise InputError(f"row has columns {extra} that earlier rows lacked; CSV needs one header: "
                                 "write .jsonl or .parquet instead") from None

    def _write_parquet(self, rows: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            table = pa.Table.from_pylist(rows)
            self._parquet = pq.ParquetWriter(self.path, table.schema)
        else:
            table = pa.Table.from_pylist(rows, schema=self._parquet.schema)
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        if self.format == "parquet" and self._parquet is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), self.path)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
