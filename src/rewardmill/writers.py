"""Output formats: JSONL, JSON, Parquet and CSV, each written as chunk parts and assembled into one file.

A run commits each chunk of rows as a part file (`checkpoint.CommittedOutput` decides where and when); the output
file is assembled from the parts at the end. Parquet and CSV need one schema or header for the whole file, but a
column can first appear, or first hold a value, in a late chunk: the file is assembled under the union of all
columns (types promoted across parts, e.g. an error column that is all null in the first chunk). Assembly reads
only the parts, so a resumed run and an uninterrupted one assemble the same bytes.
"""

from __future__ import annotations

import csv
import json
import shutil
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


class JsonLines:
    """Parts are JSON lines; the file is their concatenation."""

    part_suffix = ".jsonl"

    def resume(self, parts: list[Path]) -> None:
        """Take up the state that committed parts imply (only Parquet has any)."""

    def write_part(self, rows: list[dict], file: Path) -> None:
        with open(file, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(_json(row) + "\n" for row in rows)

    def assemble(self, parts: list[Path], columns: list[str], target: Path) -> None:
        with open(target, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)


class JsonArray(JsonLines):
    def assemble(self, parts: list[Path], columns: list[str], target: Path) -> None:
        count = 0
        with open(target, "w", encoding="utf-8", newline="") as out:
            out.write("[")
            for part in parts:
                with open(part, encoding="utf-8", newline="") as handle:
                    for line in handle:
                        out.write(("," if count else "") + "\n" + line.rstrip("\n"))
                        count += 1
            out.write("\n]\n" if count else "]\n")


class Csv(JsonLines):
    """Parts are JSON lines; the header (every column seen, in order of first appearance) is known at the end."""

    def assemble(self, parts: list[Path], columns: list[str], target: Path) -> None:
        with open(target, "w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for part in parts:
                with open(part, encoding="utf-8") as handle:
                    for line in handle:
                        row = json.loads(line)
                        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                                         for k, v in row.items()})


class Parquet:
    """One Parquet part per chunk; the file is written under the unified schema of all parts. A chunk whose
    types cannot be unified with the earlier ones is refused when it is written, not at the end."""

    part_suffix = ".parquet"

    def __init__(self) -> None:
        self.schema = None

    def resume(self, parts: list[Path]) -> None:
        import pyarrow.parquet as pq

        for part in parts:
            self._unify(pq.read_schema(part))

    def _unify(self, schema) -> None:
        import pyarrow as pa

        self.schema = schema if self.schema is None else pa.unify_schemas([self.schema, schema],
                                                                           promote_options="permissive")

    def write_part(self, rows: list[dict], file: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        try:
            # from_pylist would take the columns of the first row only; a column per key seen keeps them all
            table = pa.Table.from_pydict({name: [row.get(name) for row in rows] for name in columns})
            self._unify(table.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            raise InputError(f"cannot write these rows to Parquet, which needs one type per column: {error}; "
                             "write .jsonl instead, which keeps every value as it is") from None
        pq.write_table(table, file)

    def assemble(self, parts: list[Path], columns: list[str], target: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = None
        for part in parts:
            found = pq.read_schema(part)
            schema = found if schema is None else pa.unify_schemas([schema, found], promote_options="permissive")
        if schema is None:
            pq.write_table(pa.table({}), target)
            return
        with pq.ParquetWriter(target, schema) as writer:
            for part in parts:
                table = pq.read_table(part)
                arrays = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
                          for f in schema]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


_FORMATS = {"jsonl": JsonLines, "json": JsonArray, "csv": Csv, "parquet": Parquet}


def part_format(fmt: str) -> JsonLines | Parquet:
    """A fresh writer of parts for the output format `fmt` (jsonl, json, csv or parquet)."""
    return _FORMATS[fmt]()
