"""Write rows to JSONL, JSON, Parquet or CSV, atomically and without dropping a column.

Rows go to a temporary folder beside the target; the target is replaced only when the run completes
(`Writer.close`). A failed run (`abort`, or an exception leaving the `with` block) leaves an earlier output as it
was. Parquet and CSV need one schema or header for the whole file, but a column can first appear, or first hold
a value, in a late chunk: each chunk is kept as written, and the file is assembled at the end under the union of
all columns (types promoted across chunks, e.g. an error column that is all null in the first chunk).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown output format; use a .jsonl, .json, .parquet or .csv file name")
    return fmt


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _json(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, default=_default)


class _JsonLines:
    def __init__(self, folder: Path):
        self.file = folder / "out"
        self.handle = open(self.file, "w", encoding="utf-8", newline="")

    def write(self, rows: list[dict]) -> None:
        self.handle.writelines(_json(row) + "\n" for row in rows)

    def finish(self) -> Path:
        self.handle.close()
        return self.file


class _JsonArray(_JsonLines):
    def __init__(self, folder: Path):
        super().__init__(folder)
        self.count = 0
        self.handle.write("[")

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.handle.write(("," if self.count else "") + "\n" + _json(row))
            self.count += 1

    def finish(self) -> Path:
        self.handle.write("\n]\n" if self.count else "]\n")
        return super().finish()


class _Csv(_JsonLines):
    """Rows are kept as JSON lines until the end, when the header (every column seen, in order) is known."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.folder = folder
        self.columns: dict[str, None] = {}

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.columns.update(dict.fromkeys(row))
        super().write(rows)

    def finish(self) -> Path:
        rows_file = super().finish()
        target = self.folder / "out.csv"
        with open(rows_file, encoding="utf-8") as lines, open(target, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.columns))
            writer.writeheader()
            for line in lines:
                row = json.loads(line)
                writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                                 for k, v in row.items()})
        return target


class _Parquet:
    """One Parquet part per chunk; at the end, one file under the unified schema of all parts."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.parts: list[Path] = []
        self.schema = None

    def write(self, rows: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        try:
            # from_pylist would take the columns of the first row only; a column per key seen keeps them all
            table = pa.Table.from_pydict({name: [row.get(name) for row in rows] for name in columns})
            self.schema = table.schema if self.schema is None else pa.unify_schemas(
                [self.schema, table.schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            raise InputError(f"cannot write these rows to Parquet, which needs one type per column: {error}; "
                             "write .jsonl instead, which keeps every value as it is") from None
        part = self.folder / f"part-{len(self.parts):06d}.parquet"
        pq.write_table(table, part)
        self.parts.append(part)

    def finish(self) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = self.folder / "out.parquet"
        if self.schema is None:
            pq.write_table(pa.table({}), target)
            return target
        with pq.ParquetWriter(target, self.schema) as writer:
            for part in self.parts:
                table = pq.read_table(part)
                columns = [
                    table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
                    for f in self.schema
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
                part.unlink()
        return target


_SINKS = {"jsonl": _JsonLines, "json": _JsonArray, "csv": _Csv, "parquet": _Parquet}


class Writer:
    """Writes chunks of rows to `path` in the format its extension names. Use as a context manager: the file
    appears (or is replaced) only when the block completes without an exception."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = output_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._folder = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        self._sink = _SINKS[self.format](self._folder)

    def write(self, rows: list[dict]) -> None:
        if rows:
            self._sink.write(rows)

    def close(self) -> None:
        """Finish the file and move it into place."""
        try:
            os.replace(self._sink.finish(), self.path)
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def abort(self) -> None:
        """Drop what was written; the target stays as it was."""
        handle = getattr(self._sink, "handle", None)
        if handle is not None:
            handle.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
