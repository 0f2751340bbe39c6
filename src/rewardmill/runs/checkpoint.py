"""Output committed chunk by chunk, so that a run killed at any moment can be resumed without losing or
repeating a row.

Everything a run writes goes to a folder beside the output, `OUTPUT.partial/`:

  manifest.json           what the run is: fingerprints of the input, the scorer and every setting that changes
                          the output (written first, replaced atomically); beside it, as information never
                          compared, the scorer's specification when it has one
  chunk-000000.jsonl      a committed chunk's rows (.parquet for Parquet output)
  chunk-000000.json       its commit record: input rows consumed, output rows, columns, the chunk's tally, and
                          the writer's notes (the columns it had to widen to keep every value, and why)

A chunk's part is written under a temporary name, flushed to disk and renamed; then its record is written the
same way. A chunk is committed when its record exists, and the records name the input rows done: a resumed run
skips that many input rows and starts the next chunk where an uninterrupted run would have. Anything else in the
folder (a temporary file, a part whose record was never written) is removed on resume. At the end the output is
assembled from the parts into a temporary file, moved into place, and the folder is removed (the manifest
first, so a folder without one never counts as a partial run). A lock on the folder keeps two runs from writing
the same output at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from .writers import Part, output_format, part_format

MANIFEST = "manifest.json"
LOCK = "lock"
VERSION = 2  # 2: records hold the writer's notes (columns widened to keep every value)


def partial_folder(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def committed_rows(output: str | Path) -> int:
    """Input rows done by an interrupted run of `output` (0 when there is none)."""
    folder = partial_folder(Path(output))
    if _read_json(folder / MANIFEST) is None:
        return 0
    return sum(record["rows_in"] for record in _committed(folder))


def recorded_choices(output: str | Path) -> dict[str, Any] | None:
    """The scorer's own choices (`choices.py`) recorded by an interrupted run of `output` that committed rows."""
    if not committed_rows(output):
        return None
    manifest = _read_json(partial_folder(Path(output)) / MANIFEST) or {}
    return (manifest.get("identity") or {}).get("choices")


class CommittedOutput:
    """Rows committed chunk by chunk to `OUTPUT.partial/`, assembled into `output` by `finish`.

    `identity` is what the output depends on (a JSON-able dict). A folder left by an interrupted run is taken up
    with `resume=True` when its identity is the same (else InputError saying what changed), thrown away with
    `overwrite=True`, and otherwise refused; `info` is recorded in the manifest beside it and never compared. Use
    as a context manager: leaving the block without `finish` keeps the committed chunks for a later `resume` (and
    removes the folder when nothing was committed).
    """

    def __init__(self, output: str | Path, identity: dict[str, Any], *, resume: bool = False,
                 overwrite: bool = False, fmt: str | None = None, info: dict[str, Any] | None = None):
        self.output = Path(output)
        self.format = part_format(fmt or output_format(self.output))
        self.folder = partial_folder(self.output)
        self.records: list[dict[str, Any]] = []
        self.resumed_rows = 0
        self._lock = _lock(self.folder, self.output)
        self._active = True
        try:
            self._open(identity, resume, overwrite, info)
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ state

    @property
    def rows_done(self) -> int:
        """Input rows whose output is committed."""
        return sum(record["rows_in"] for record in self.records)

    @property
    def rows_out(self) -> int:
        """Output rows committed."""
        return sum(record["rows_out"] for record in self.records)

    @property
    def widened(self) -> dict[str, str]:
        """Each column the writer wrote in another form to keep every value (JSON text, say), and why."""
        found: dict[str, str] = {}
        for record in self.records:
            for name, reason in record["format"].get("widened", {}).items():
                found.setdefault(name, reason)
        return found

    @property
    def tallies(self) -> Iterator[dict[str, Any]]:
        """The tally each committed chunk was committed with, in order."""
        return (record["tally"] for record in self.records)

    def _open(self, identity: dict[str, Any], resume: bool, overwrite: bool, info: dict[str, Any] | None) -> None:
        manifest = _read_json(self.folder / MANIFEST)
        committed = _committed(self.folder) if manifest is not None else []
        if committed and not overwrite:
            rows = sum(record["rows_in"] for record in committed)
            if not resume:
                raise InputError(f"{self.output}: an interrupted run left {rows} input rows done in {self.folder}; "
                                 "add --resume to continue it, or --overwrite to start over")
            changes = describe_changes(manifest.get("identity", {}), identity)
            if manifest.get("version") != VERSION:
                changes = changes or [f"the partial output's layout (version {manifest.get('version')})"]
            if changes:
                raise InputError(f"cannot resume {self.output}: it was started with something else: "
                                 f"{'; '.join(changes)}. Run the interrupted command unchanged, or start over with "
                                 "--overwrite")
            self.records = committed
            self.resumed_rows = rows
        keep = {MANIFEST, LOCK} if self.records else {LOCK}
        for record_number, record in enumerate(self.records):
            keep.add(_record_name(record_number))
            if record["part"]:
                keep.add(record["part"])
        for path in self.folder.iterdir():
            if path.name not in keep:
                _remove(path)
        self.format.resume(self._parts())
        if not self.records:
            _write_json(self.folder / MANIFEST, {"version": VERSION, "identity": identity,
                                                 **({"info": info} if info else {})})

    def note_damaged_input(self, lines: int, sha256: str) -> None:
        """Record that the input broke off after `lines` lines with that digest (`committed.with_repaired_input`)."""
        manifest = _read_json(self.folder / MANIFEST) or {}
        _write_json(self.folder / MANIFEST, {**manifest, "damaged_input": {"lines": lines, "sha256": sha256}})

    def _parts(self) -> list[Part]:
        return [(self.folder / record["part"], record["format"]) for record in self.records if record["part"]]

    # ------------------------------------------------------------------ writing

    def commit(self, rows: list[dict], rows_in: int, tally: dict[str, Any] | None = None) -> None:
        """Commit one chunk: `rows` (may be empty) made from the next `rows_in` input rows, with a JSON-able
        `tally` of the chunk that the caller folds back into its summary on resume."""
        number = len(self.records)
        part, notes = None, {}
        if rows:
            part = f"chunk-{number:06d}{self.format.part_suffix}"
            staging = self.folder / (part + ".tmp")
            notes = self.format.write_part(rows, staging, self.rows_out, self._parts())
            _sync(staging)
            os.replace(staging, self.folder / part)
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        record = {"rows_in": rows_in, "rows_out": len(rows), "part": part, "columns": list(columns),
                  "tally": tally or {}, "format": notes}
        _write_json(self.folder / _record_name(number), record)
        self.records.append(record)

    def assemble(self) -> Path:
        """The output assembled from every committed part, as a file inside the folder."""
        columns: dict[str, None] = {}
        for record in self.records:
            columns.update(dict.fromkeys(record["columns"]))
        target = self.folder / ("assembled" + self.output.suffix + ".tmp")
        self.format.assemble(self._parts(), list(columns), target)
        _sync(target)
        return target

    def finish(self) -> Path:
        """Assemble the output, move it into place and remove the folder."""
        os.replace(self.assemble(), self.output)
        self.discard()
        return self.output

    def discard(self) -> None:
        """Remove the folder and everything in it (the manifest first)."""
        (self.folder / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        self._active = False
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> CommittedOutput:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if not self._active:
            return
        if self.records:
            self._release()
        else:
            self.discard()


def read_manifest(output: str | Path) -> dict[str, Any] | None:
    """The manifest of the run that writes `output`, if one was started."""
    return _read_json(partial_folder(output) / MANIFEST)


def _record_name(number: int) -> str:
    return f"chunk-{number:06d}.json"


def _committed(folder: Path) -> list[dict[str, Any]]:
    """The records of committed chunks, from the first on, up to the first missing or incomplete one."""
    records = []
    while (record := _read_json(folder / _record_name(len(records)))) is not None:
        if record.get("part") and not (folder / record["part"]).is_file():
            break
        records.append(record)
    return records


def _lock(folder: Path, output: Path):
    """An exclusive lock on the folder, held while the run writes (released by the OS when the process dies)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, but rewardmill keeps a run's committed chunks in a folder of that "
                         "name; move the file away or choose another output name")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one run at a time is then up to the user
        folder.mkdir(parents=True, exist_ok=True)
        return None
    for _ in range(10):
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise InputError(f"another run is writing {output} (its work is in {folder}); wait for it to end, or "
                             "choose another output name") from None
        try:  # the run before may have removed the folder between our open and our lock: lock the new one
            if os.stat(folder / LOCK).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()
    raise InputError(f"could not lock {folder}: it keeps being removed by another run")


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_json(path: Path, value: Any) -> None:
    staging = path.with_name(path.name + ".tmp")
    with open(staging, "w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------ identity


def input_fingerprint(path: str | Path, split: str | None = None) -> dict[str, Any]:
    """The input's content (SHA-256 of its bytes, every file of a folder), not its name: a moved input resumes,
    a changed one does not. A hub dataset is named by its id and split."""
    from ..rows.readers import looks_like_hub_id

    if looks_like_hub_id(str(path)):
        return {"hub dataset": str(path), "split": split}
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    size = 0
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
                size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest(), "split": split}


def scorer_identity(scorer: Any) -> dict[str, Any]:
    """What a scorer's outputs depend on: its `identity` when it has one, else its name and outputs."""
    identity = getattr(scorer, "identity", None)
    if isinstance(identity, dict):
        return identity
    return {"name": getattr(scorer, "name", type(scorer).__name__),
            "outputs": list(getattr(scorer, "output_names", ())),
            "item outputs": list(getattr(scorer, "item_output_names", ()))}


def scorer_choices(scorer: Any) -> dict[str, Any] | None:
    """What a scorer chose for itself at load (`choices.py`; reward models only), recorded in the manifest."""
    choices = getattr(scorer, "choices", None)
    return choices if isinstance(choices, dict) else None


def scorer_spec(scorer: Any) -> dict[str, Any] | None:
    """The scorer's serialisable specification (`spec.to_dict()`, reward models), recorded in the manifest as
    information: the scorer's identity is what a resumed run is compared on."""
    to_dict = getattr(getattr(scorer, "spec", None), "to_dict", None)
    return to_dict() if callable(to_dict) else None


def describe_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each leaf that differs between two identities (nested keys joined with dots)."""
    old, new = _flatten(before), _flatten(now)
    return [f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: json.loads(json.dumps(value, default=str))}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _short(value: Any) -> str:
    text = "(none)" if value is None else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
