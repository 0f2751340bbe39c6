"""Read rows from JSONL (also gzipped), JSON, CSV, Parquet, a saved `datasets` directory or a hub dataset id.

Readers stream plain dict rows (JSON arrays are the exception: they are parsed whole). The format comes from the
name and is checked against the file's first bytes, so a Parquet or gzip file under another name is named as
what it is. An empty file has no rows. Text formats are read in `encoding` (UTF-8 by default), and a UTF-8
byte-order mark at the start is dropped; a CSV file is decoded whole before its first row is read, so a file in
another encoding stops before any work. CSV cells may be of any size; a CSV record with more or fewer cells than
the header, or whose quoting is broken (a file cut off inside a quoted cell), is that row's error.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputDamaged, InputError
from .shapes import UnreadableRow

_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_MAGIC = {b"PAR1": "Parquet", b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "zip"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_ENCODING = "utf-8"


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


def read_rows(path: str | Path, *, split: str | None = None, encoding: str = DEFAULT_ENCODING) -> RowSource:
    """Open `path` and return its rows as a stream, with the row count when it is known cheaply. `encoding`:
    the text encoding of JSONL, JSON and CSV files."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"--encoding {encoding}: not a text encoding Python knows "
                         "(e.g. utf-8, latin-1, cp1252)") from None
    if looks_like_hub_id(str(path)):
        return _read_hub_dataset(str(path), split)
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    fmt = input_format(path)
    if fmt != "dataset" and path.stat().st_size == 0:
        return RowSource(iter(()), 0)
    if fmt == "jsonl":
        if not _line_safe(encoding):
            raise InputError(f"{path}: JSON Lines are read line by line as bytes, which {encoding} does not allow; "
                             f"convert the file to UTF-8 (e.g. iconv -f {encoding} -t utf-8)")
        total = None if path.suffix.lower() == ".gz" else _count_lines(path)
        return RowSource(_read_jsonl(path, encoding), total)
    if fmt == "json":
        rows = _read_json(path, encoding)
        return RowSource(iter(rows), len(rows))
    if fmt == "csv":
        _check_encoding(path, encoding)
        return RowSource(_read_csv(path, encoding), None)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        return RowSource(_read_parquet(path, file), file.metadata.num_rows)
    return _read_dataset(path, split)


def _count_lines(path: Path) -> int:
    """Non-blank lines, for the progress bar's total (a fast pass over the bytes)."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            count += bool(line.strip())
    return count


def _line_safe(encoding: str) -> bool:
    """Whether the encoding writes a newline, a comma and a quote as the ASCII bytes (not UTF-16 or UTF-32), so
    a file in it can be split into lines as bytes."""
    return '\n,"'.encode(encoding) == b'\n,"'


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _without_bom(raw: bytes, encoding: str) -> bytes:
    return raw[len(codecs.BOM_UTF8):] if _is_utf8(encoding) and raw.startswith(codecs.BOM_UTF8) else raw


def _open_lines(path: Path):
    import gzip

    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _read_jsonl(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[dict]:
    """One row per non-blank line (see `parse_line`). A compressed file that breaks off or is corrupt ends the
    stream with `InputDamaged`, after every row before the damage."""
    import zlib

    digest, number, rows = hashlib.sha256(), 0, 0
    with _open_lines(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                if number == 1:
                    raw = _without_bom(raw, encoding)
                if raw.strip():
                    rows += 1
                    yield parse_line(raw, number, encoding)
        except (EOFError, OSError, zlib.error) as error:
            where = getattr(getattr(handle, "fileobj", None), "tell", lambda: None)()
            at = f", byte {where:,} of {path.stat().st_size:,} of the compressed file" if where is not None else ""
            what = "breaks off" if isinstance(error, EOFError) else "is corrupt"
            raise InputDamaged(f"{path} {what} after line {number:,} ({rows:,} rows read{at}): "
                               f"{str(error) or type(error).__name__}", number, digest.hexdigest(),
                               sound_before=isinstance(error, EOFError)) from None


def line_prefix_digest(path: str | Path, lines: int) -> str | None:
    """SHA-256 of the first `lines` lines of a JSONL file (decompressed), or None when it has fewer or breaks off
    before them."""
    import zlib

    digest, count = hashlib.sha256(), 0
    try:
        with _open_lines(Path(path)) as handle:
            for raw in handle:
                if count == lines:
                    break
                digest.update(raw)
                count += 1
    except (EOFError, OSError, zlib.error):
        return None
    return digest.hexdigest() if count == lines else None


def parse_line(raw: bytes, number: int, encoding: str = DEFAULT_ENCODING) -> dict:
    """A JSONL line as a row; a line that is not in `encoding`, not JSON, too deeply nested or not an object
    becomes an `UnreadableRow` (that row's error), never a crash of the whole run."""
    if number == 1 and isinstance(raw, str):  # a line read as text elsewhere (Ray's reader)
        raw = raw.removeprefix("\ufeff")
    try:
        value = json.loads(raw.decode(encoding) if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as error:
        return UnreadableRow(f"line {number} is not valid {encoding} (byte {error.start}); if the file is in another "
                             "encoding, name it with --encoding", line=number)
    except json.JSONDecodeError as error:
        if isinstance(raw, bytes) and not raw.endswith(b"\n") and _ends_early(error, raw):
            return UnreadableRow(f"line {number} is cut off: the file ends inside its JSON ({error.msg}), so the "
                                 "file may be truncated", line=number)
        return UnreadableRow(f"line {number} is not valid JSON ({error.msg})", line=number)
    except RecursionError:
        return UnreadableRow(f"line {number} is JSON nested too deeply to read", line=number)
    if not isinstance(value, dict):
        return UnreadableRow(f"line {number} is a JSON {type(value).__name__}, not an object", line=number)
    return value


def _ends_early(error: json.JSONDecodeError, raw: bytes) -> bool:
    """Whether the JSON stopped because the text ran out (a string still open, or nothing after the last token),
    as it does in a line cut off by the end of the file."""
    return error.msg.startswith("Unterminated string") or error.pos >= len(raw.rstrip())


def _not_in_encoding(path: Path, line: int, byte: int, bad: bytes, encoding: str) -> InputError:
    return InputError(f"{path}: line {line} is not valid {encoding} (byte {byte:,} of the file, 0x{bad.hex()}); name "
                      "the file's encoding with --encoding, e.g. --encoding latin-1 or --encoding cp1252")


def _check_encoding(path: Path, encoding: str) -> None:
    """Decode the whole file once, so that a file in another encoding stops the run before any row is scored
    (rows committed under the wrong encoding would only block the run with the right one); an InputError names
    the line and the byte where decoding fails."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset = 1, 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            state = decoder.getstate()
            try:
                line += decoder.decode(block).count("\n")
            except UnicodeDecodeError as error:
                pending = len(state[0])  # bytes of a character begun in the previous block
                decoder.setstate(state)
                line += decoder.decode(block[:max(0, error.start - pending)]).count("\n")
                bad = error.object[error.start:error.end]
                raise _not_in_encoding(path, line, offset + error.start - pending, bad, encoding) from None
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise _not_in_encoding(path, line, offset - len(error.object) + error.start, error.object, encoding) from None


def _read_json(path: Path, encoding: str = DEFAULT_ENCODING) -> list:
    raw = _without_bom(path.read_bytes(), encoding)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        _check_encoding(path, encoding)  # raises, naming the line
        raise
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"rows": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of rows")
    return data


def _next_record(reader) -> list[str]:
    """The reader's next record, its cells of any size (the csv module stops at 128 KB). The limit is the csv
    module's, for the whole process: it is raised for this one read and put back before the rows go to the caller."""
    previous = csv.field_size_limit(sys.maxsize)
    try:
        return next(reader)
    finally:
        csv.field_size_limit(previous)


def _read_csv(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[dict]:
    """A row per record under the header's names (the file already checked to decode). A record with more or
    fewer cells than the header is an `UnreadableRow` holding the cells that have a column, its error naming the
    extra or missing ones; a record whose quoting is broken is an `UnreadableRow` saying how."""
    text_encoding = "utf-8-sig" if _is_utf8(encoding) else encoding
    with open(path, encoding=text_encoding, newline="") as handle:
        # strict: a file that ends inside a quoted cell, or text after a closing quote, is an error, not a cell
        # quietly made of the rest of the file or of the text glued on
        reader = csv.reader(handle, strict=True)
        try:
            header = _next_record(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise InputError(f"{path}: the header (line 1) cannot be read: {_quoting_problem(error)}") from None
        while True:
            start = reader.line_num + 1
            try:
                cells = _next_record(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield UnreadableRow(f"{_lines(start, reader.line_num)} {_quoting_problem(error)}")
                continue
            if cells:  # not a blank line
                yield _csv_row(cells, header, _lines(start, reader.line_num))


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first >= last else f"the record on lines {first}-{last}"


def _quoting_problem(error: csv.Error) -> str:
    if "unexpected end of data" in str(error):
        return "is cut off: the file ends inside a quoted cell, so the file may be truncated"
    if "expected after" in str(error):
        return ("has text after a quoted cell's closing quote (a quote inside a quoted cell is written twice: \"\"; "
                f"csv: {error})")
    return f"cannot be read as CSV ({error})"


def _csv_row(cells: list[str], header: list[str], where: str) -> dict:
    if len(cells) == len(header):
        return dict(zip(header, cells))
    problem = f"{where} has {len(cells)} cells where the header has {len(header)}"
    if len(cells) > len(header):
        extra = ", ".join(repr(cell[:40]) for cell in cells[len(header):])
        problem += f" (cells past the header: {extra})"
    else:
        problem += f" (no cell for {', '.join(repr(name) for name in header[len(cells):])})"
    row = UnreadableRow(problem)
    row.update(zip(header, cells))
    return row


def _read_parquet(path: Path, file) -> Iterator[dict]:
    """The rows, batch by batch; a batch that cannot be read (a damaged page) ends the stream with `InputDamaged`.
    Parquet pages carry no checksum by default, so the rows read before it are not taken as sound either."""
    import pyarrow as pa

    batches, rows = file.iter_batches(batch_size=1024), 0
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as error:
            reason = str(error).strip().splitlines()[0].rstrip(": ") if str(error).strip() else type(error).__name__
            raise InputDamaged(f"{path} is damaged after {rows:,} rows: {reason}", rows, "",
                               sound_before=False) from None
        if batch is None:
            return
        rows += batch.num_rows
        yield from batch.to_pylist()


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

    from .. import hub

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
