"""Output formats: JSONL, JSON, Parquet and CSV, each written as chunk parts and assembled into one file.

A run commits each chunk of rows as a part file (`checkpoint.CommittedOutput` decides where and when); the output
file is assembled from the parts at the end. Every value of every column is kept, whatever its type, so nothing a
late row holds can make the assembly fail. Where a format cannot hold a column's values as they are, the column
changes form, and `write_part` says so in the notes it returns (kept in the chunk's record, so a resumed run
knows them and the summary can name the column and why):

- Parquet: a column's type is settled by the chunks committed so far (a null-only chunk settles nothing; a later
  type is taken only where every value already written converts to it exactly, e.g. int64 -> double for small
  integers, a struct gaining a field). A column whose values have no one Arrow type (an integer beyond 64 bits,
  text in one row and a number in another), or disagree with the settled type, is written as the JSON text of
  each value from then on, and its earlier parts are converted to JSON text when the file is assembled (always
  possible); the field carries `rewardmill.encoding: json` metadata.
- CSV: cells are text, so a column whose values are of more than one kind (text, number, boolean, list or
  object) is written as the JSON text of each value, so that 7 and "7" stay apart.
- JSON and JSONL: NaN and infinities, which JSON has no numbers for, are written as the text "NaN", "Infinity",
  "-Infinity" (a score is never one: the row layer makes it an error).

Assembly reads only the parts and their notes, so a resumed run and an uninterrupted one assemble the same bytes.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
JSON_FIELD = {b"rewardmill.encoding": b"json"}  # Parquet field metadata of a column written as JSON text

Part = tuple[Path, dict[str, Any]]  # a committed part and the notes `write_part` returned for it
Widened = dict[str, str]  # column -> how it was written instead, and why


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


def json_text(value: Any) -> str:
    """The JSON text of a value (a NaN stays Python's `NaN`, which `json.loads` reads back)."""
    return json.dumps(value, ensure_ascii=False, default=_default)


def _kind(value: Any) -> str:
    """A value's kind, as a user would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class JsonLines:
    """Parts are JSON lines; the file is their concatenation."""

    part_suffix = ".jsonl"

    def resume(self, parts: list[Part]) -> None:
        """Take up the state that committed parts imply."""

    def write_part(self, rows: list[dict], file: Path, first_row: int, earlier: list[Part]) -> dict[str, Any]:
        """Write one chunk's rows (the output's rows from `first_row` on) to `file`; return notes for its record."""
        widened: Widened = {}
        with open(file, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(_finite_json_line(row, first_row + r, widened) + "\n" for r, row in enumerate(rows))
        return {"widened": widened} if widened else {}

    def assemble(self, parts: list[Part], columns: list[str], target: Path) -> None:
        with open(target, "wb") as out:
            for part, _ in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)


NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _finite_json_line(row: dict, number: int, widened: Widened) -> str:
    try:
        return json.dumps(row, ensure_ascii=False, default=_default, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere: JSON has no such numbers
        pass
    clean = {}
    for name, value in row.items():
        clean[name], found = _without_non_finite(value)
        if found and name not in widened:
            widened[name] = (f"NaN and infinities written as the text \"NaN\", \"Infinity\", \"-Infinity\" "
                             f"(row {number} holds {found}, which JSON has no number for)")
    return json.dumps(clean, ensure_ascii=False, default=_default, allow_nan=False)


def _without_non_finite(value: Any) -> tuple[Any, str | None]:
    """`value` with each NaN or infinity replaced by its name as text, and the first name (None if none)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        text = NON_FINITE[str(value)]
        return text, text
    if isinstance(value, dict):
        cleaned = {key: _without_non_finite(inner) for key, inner in value.items()}
        return {key: inner for key, (inner, _) in cleaned.items()}, _first_found(cleaned.values())
    if isinstance(value, (list, tuple)):
        cleaned_list = [_without_non_finite(inner) for inner in value]
        return [inner for inner, _ in cleaned_list], _first_found(cleaned_list)
    return value, None


def _first_found(cleaned: Any) -> str | None:
    return next((found for _, found in cleaned if found), None)


class JsonArray(JsonLines):
    def assemble(self, parts: list[Part], columns: list[str], target: Path) -> None:
        count = 0
        with open(target, "w", encoding="utf-8", newline="") as out:
            out.write("[")
            for part, _ in parts:
                with open(part, encoding="utf-8", newline="") as handle:
                    for line in handle:
                        out.write(("," if count else "") + "\n" + line.rstrip("\n"))
                        count += 1
            out.write("\n]\n" if count else "]\n")


class Csv(JsonLines):
    """Parts are JSON lines (NaN kept as is: they are read back here); the header (every column seen, in order of
    first appearance) and the columns written as JSON text (more than one kind of value) are known at the end."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, int]] = {}  # column -> kind -> first row holding it
        self.empty_schema: Any = None  # the header of a file assembled from no row (None: no column)

    def resume(self, parts: list[Part]) -> None:
        for _, notes in parts:
            self._add(notes.get("kinds", {}))

    def _add(self, kinds: dict[str, dict[str, int]]) -> Widened:
        widened: Widened = {}
        for name, found in kinds.items():
            known = self.kinds.setdefault(name, {})
            before = len(known)
            for kind, row in found.items():
                known.setdefault(kind, row)
            if before <= 1 < len(known):
                (first, first_row), (later, later_row) = sorted(known.items(), key=lambda item: item[1])[:2]
                widened[name] = (f"written as JSON text (row {later_row} holds {later} where row {first_row} holds "
                                 f"{first}, and a CSV cell is text either way)")
        return widened

    def write_part(self, rows: list[dict], file: Path, first_row: int, earlier: list[Part]) -> dict[str, Any]:
        kinds: dict[str, dict[str, int]] = {}
        with open(file, "w", encoding="utf-8", newline="") as handle:
            for r, row in enumerate(rows):
                handle.write(json.dumps(row, ensure_ascii=False, default=_default) + "\n")
                for name, value in row.items():
                    if value is not None:
                        kinds.setdefault(name, {}).setdefault(_csv_kind(value), first_row + r)
        widened = self._add(kinds)
        return {"kinds": kinds, "widened": widened} if widened else {"kinds": kinds}

    def assemble(self, parts: list[Part], columns: list[str], target: Path) -> None:
        as_json = {name for name, kinds in self.kinds.items() if len(kinds) > 1}
        if not columns and self.empty_schema is not None:
            columns = self.empty_schema.names
        with open(target, "w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for part, _ in parts:
                with open(part, encoding="utf-8") as handle:
                    for line in handle:
                        row = json.loads(line)
                        writer.writerow({k: _csv_cell(v, k in as_json) for k, v in row.items()})


def _csv_kind(value: Any) -> str:
    # what the kind is once in the part (a date is written as its ISO text)
    kind = _kind(value)
    return kind if kind in ("a boolean", "a number", "text", "a list", "an object") else "text"


def _csv_cell(value: Any, as_json: bool) -> Any:
    if value is None:
        return None
    if as_json or isinstance(value, (list, dict)):
        return json_text(value)
    return value


class Parquet:
    """One Parquet part per chunk, each column's type settled as chunks commit (see the module's docstring);
    the file is written under the settled types, columns that became JSON text converted in earlier parts."""

    part_suffix = ".parquet"

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}  # column -> its settled Arrow type (pa.null() until a value is seen)
        self.json: set[str] = set()  # columns written as JSON text
        self.empty_schema: Any = None  # the columns of a file assembled from no part (None: no column)

    def resume(self, parts: list[Part]) -> None:
        import pyarrow.parquet as pq

        for part, _ in parts:
            for field in pq.read_schema(part):
                if is_json_field(field) or field.name in self.json:
                    self.json.add(field.name)
                    self.types.pop(field.name, None)
                elif field.name in self.types:
                    self.types[field.name] = _unify(self.types[field.name], field.type)
                else:
                    self.types[field.name] = field.type

    def write_part(self, rows: list[dict], file: Path, first_row: int, earlier: list[Part]) -> dict[str, Any]:
        import pyarrow.parquet as pq

        table, widened = self._table(rows, first_row, earlier)
        pq.write_table(table, file)
        # the types as Parquet gives them back (list items named "element"), as a resumed run reads them
        self.resume([(file, {})])
        return {"widened": widened} if widened else {}

    def _table(self, rows: list[dict], first_row: int, earlier: list[Part]) -> tuple[Any, Widened]:
        """The chunk's rows as a table of the settled types, and the columns it writes as JSON text, and why."""
        import pyarrow as pa

        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        arrays, fields, widened = [], [], {}
        for name in columns:
            values = [row.get(name) for row in rows]
            array, reason = (None, None) if name in self.json else self._typed(name, values, first_row, earlier)
            if array is None:
                if reason:
                    widened[name] = f"written as JSON text ({reason})"
                array = _json_array(values)
                fields.append(pa.field(name, pa.string(), metadata=JSON_FIELD))
            else:
                fields.append(pa.field(name, array.type))
            arrays.append(array)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), widened

    def _typed(self, name: str, values: list, first_row: int, earlier: list[Part]) -> tuple[Any, str | None]:
        """The chunk's values as an array of the column's settled type (a new one where every earlier value
        converts to it exactly), or None and why they cannot be."""
        import pyarrow as pa

        try:
            array = pa.array(values)
        except (pa.ArrowException, OverflowError) as error:
            return None, _no_one_type(values, first_row, error)
        if not _same_values(values, array.to_pylist()):
            return None, f"from row {first_row} on its values would change as Parquet's {array.type}"
        previous = self.types.get(name)
        if previous is None or previous == array.type:
            return array, None
        row = first_row + next((r for r, value in enumerate(values) if value is not None), 0)
        clash = f"row {row} holds {array.type} where earlier rows hold {previous}"
        try:
            target = _unify(previous, array.type)
        except (pa.ArrowException, TypeError):
            return None, clash
        array = _cast_exactly(array, target)
        if array is None or not (_lossless(previous, target) or _parts_fit(name, target, earlier)):
            return None, clash
        return array, None

    def assemble(self, parts: list[Part], columns: list[str], target: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not parts:
            pq.write_table(pa.table({}) if self.empty_schema is None else self.empty_schema.empty_table(), target)
            return
        schema = pa.schema([pa.field(name, pa.string(), metadata=JSON_FIELD) if name in self.json
                            else pa.field(name, self.types.get(name, pa.null())) for name in columns])
        with pq.ParquetWriter(target, schema) as writer:
            for part, _ in parts:
                table = pq.read_table(part)
                writer.write_table(pa.Table.from_arrays([_column(table, field) for field in schema], schema=schema))


def parquet_schema(rows: list[dict]) -> Any:
    """The Arrow schema that Parquet output gives `rows` as its first chunk (a column whose values have no one
    type as JSON text)."""
    return Parquet()._table(rows, 0, [])[0].schema


def _column(table: Any, field: Any) -> Any:
    """A part's column in the file's type: nulls where the part lacks it, JSON text where the column became so
    after this part, else cast (to a type every value of it was checked to convert to exactly)."""
    import pyarrow as pa

    if field.name not in table.column_names:
        return pa.nulls(len(table), field.type)
    column = table[field.name]
    if is_json_field(field) and not is_json_field(table.schema.field(field.name)):
        return _json_array(column.to_pylist())
    return _cast(column, field.type)


def is_json_field(field: Any) -> bool:
    """Whether a Parquet field holds JSON text that rewardmill wrote to keep a column's values."""
    return (field.metadata or {}).get(b"rewardmill.encoding") == b"json"


def _json_array(values: list) -> Any:
    import pyarrow as pa

    return pa.array([None if value is None else json_text(value) for value in values], type=pa.string())


def _unify(a: Any, b: Any) -> Any:
    import pyarrow as pa

    unified = pa.unify_schemas([pa.schema([("x", a)]), pa.schema([("x", b)])], promote_options="permissive")
    return unified.field("x").type


def _cast_exactly(array: Any, target: Any) -> Any:
    """`array` cast to `target`, or None where a value would not survive it exactly."""
    import pyarrow as pa

    if array.type == target:
        return array
    try:
        cast = _cast(array, target)
    except (pa.ArrowException, OverflowError):
        return None
    return cast if _same_values(array.to_pylist(), cast.to_pylist()) else None


def _cast(array: Any, target: Any) -> Any:
    """`array` (an Array or a ChunkedArray) as type `target`. pyarrow's cast to a list of nulls (alone, or inside
    a struct or a list), even to the type the array has, gives the list array as many null values as it has rows,
    not as many as its lists hold: an invalid array ("Length spanned by list offsets (6) larger than values array
    (length 3)"). So an array of the type already (list item names aside) is taken as it is, and one cast to a
    type that holds a list of nulls is built from its values instead."""
    import pyarrow as pa

    if array.type == target:
        return array
    if not _holds_list_of_nulls(target):
        return array.cast(target)
    if isinstance(array, pa.ChunkedArray):
        return pa.chunked_array([pa.array(chunk.to_pylist(), type=target) for chunk in array.chunks], type=target)
    return pa.array(array.to_pylist(), type=target)


def _holds_list_of_nulls(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return pa.types.is_null(kind.value_type) or _holds_list_of_nulls(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_holds_list_of_nulls(field.type) for field in kind)
    if pa.types.is_map(kind):
        return _holds_list_of_nulls(kind.key_type) or _holds_list_of_nulls(kind.item_type)
    return False


def _lossless(source: Any, target: Any) -> bool:
    """Whether every value of type `source` converts to `target` exactly, by the types alone: the same type,
    from null, lists of such, a struct gaining fields."""
    import pyarrow as pa

    if source == target or pa.types.is_null(source):
        return True
    lists = (pa.types.is_list, pa.types.is_large_list)
    if any(check(source) for check in lists) and any(check(target) for check in lists):
        return _lossless(source.value_type, target.value_type)
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        fields = {field.name: field.type for field in target}
        return all(field.name in fields and _lossless(field.type, fields[field.name]) for field in source)
    return False


def _parts_fit(name: str, target: Any, earlier: list[Part]) -> bool:
    """Whether column `name` of every earlier part converts to `target` exactly (read only when the types alone
    cannot tell, e.g. int64 -> double, which holds integers up to 2**53 exactly)."""
    import pyarrow.parquet as pq

    for part, _ in earlier:
        schema = pq.read_schema(part)
        if name not in schema.names or is_json_field(schema.field(name)):
            continue
        column = pq.read_table(part, columns=[name]).column(name).combine_chunks()
        if _cast_exactly(column, target) is None:
            return False
    return True


def _no_one_type(values: list, first_row: int, error: BaseException) -> str:
    """Why a chunk's values have no one Arrow type, naming a row."""
    for r, value in enumerate(values):
        if _has_big_int(value):
            return f"row {first_row + r} holds an integer beyond 64 bits, which Parquet has no type for"
    kinds = [(r, _kind(value)) for r, value in enumerate(values) if value is not None]
    for r, kind in kinds:
        if kind != kinds[0][1]:
            return f"row {first_row + r} holds {kind} where row {first_row + kinds[0][0]} holds {kinds[0][1]}"
    return f"its values from row {first_row} on have no one Parquet type ({error})"


def _has_big_int(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**63
    if isinstance(value, (list, tuple)):
        return any(_has_big_int(inner) for inner in value)
    if isinstance(value, dict):
        return any(_has_big_int(inner) for inner in value.values())
    return False


def _same_values(a: list, b: list) -> bool:
    """Equal as data: a number equals a number of the same value (1 == 1.0, exactly), a null field of an object
    equals a missing one (Parquet's structs cannot tell them apart), NaN equals NaN; a boolean is not a number."""
    return a == b or _canonical(a) == _canonical(b)


def _canonical(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("NaN",) if value != value else ("number", value)
    if isinstance(value, dict):
        return ("object", tuple(sorted(((str(k), _canonical(v)) for k, v in value.items() if v is not None),
                                       key=lambda item: item[0])))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_canonical(v) for v in value))
    return (type(value).__name__, value)


_FORMATS = {"jsonl": JsonLines, "json": JsonArray, "csv": Csv, "parquet": Parquet}


def part_format(fmt: str) -> JsonLines | Parquet:
    """A fresh writer of parts for the output format `fmt` (jsonl, json, csv or parquet)."""
    return _FORMATS[fmt]()
