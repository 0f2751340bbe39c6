"""The content identity of a model's weight files: a SHA-256 of each file's bytes, read in a stream.

This is what the score cache's key and a run's manifest hold for a local model, so weights replaced by others
are never mistaken for the old ones, whatever their size and modification time say. Hashing a 16 GB model takes
a while, so each digest is remembered in a small SQLite table (`DigestMemo`) under the file's stat:

    (real path, device, inode, size, mtime_ns, ctime_ns) -> sha256

and reused only while all six are unchanged. Size and mtime alone are not enough: a user can restore an old
mtime (`touch -r`, `os.utime`) after writing other bytes. ctime cannot be set by a user: any write, `utime` or
rename sets it to the current time, so new content always comes with a new key. A file whose ctime is within
`RACY_SECONDS` of the moment it was hashed is not remembered (it may still be being written within one tick of
the clock), so it is hashed again next time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import warnings
from pathlib import Path

from ..cache import CacheError, cache_problem

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
MEMO_NAME = "weight-digests.sqlite"
RACY_SECONDS = 2.0
BLOCK = 1 << 22


def weight_files(folder: Path) -> list[Path]:
    """The weight files directly in a model folder, by name."""
    return sorted((f for f in folder.glob("*") if f.suffix in WEIGHT_SUFFIXES and f.is_file()), key=lambda f: f.name)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[str, int, int, int, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


class DigestMemo:
    """Digests remembered by file stat in SQLite at `path` (None: remember nothing). With `required`, a memo
    that cannot be opened is an error (the caller reports it); otherwise it is skipped with a warning."""

    def __init__(self, path: Path | None, *, required: bool = False):
        self.path = path
        self.required = required
        self.db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, check_same_thread=False)
            with self.db:
                self.db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT, dev INTEGER, inode INTEGER, "
                                "size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT NOT NULL, "
                                "PRIMARY KEY (path, dev, inode, size, mtime_ns, ctime_ns))")
        except (OSError, sqlite3.Error) as error:
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        """A memo that cannot be read or written: an error when required, else digests are not remembered."""
        self.close()
        if self.required:
            raise CacheError(cache_problem(self.path, error)) from None
        warnings.warn(f"weight digests are not remembered in {self.path} ({error}); the weights are hashed on "
                      "every run", RuntimeWarning, stacklevel=3)

    def digest(self, file: Path) -> str:
        """The file's SHA-256, from the memo while its stat is unchanged, else computed (and remembered)."""
        key = _stat_key(file)
        try:
            row = self.db.execute("SELECT sha256 FROM digests WHERE path = ? AND dev = ? AND inode = ? AND "
                                  "size = ? AND mtime_ns = ? AND ctime_ns = ?", key).fetchone() if self.db else None
        except sqlite3.Error as error:
            self._failed(error)
            row = None
        if row is not None:
            return row[0]
        started = time.time_ns()
        value = file_digest(file)
        if self.db is not None and _stat_key(file) == key and key[5] < started - RACY_SECONDS * 1e9:
            self._remember(key, value)
        return value

    def _remember(self, key: tuple, value: str) -> None:
        try:
            with self.db:
                self.db.execute("DELETE FROM digests WHERE path = ?", key[:1])  # the file's older stats
                self.db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", (*key, value))
        except sqlite3.Error as error:
            self._failed(error)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def default_memo_path() -> Path:
    """Where digests are remembered when no --cache folder is given: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rewardmill" / MEMO_NAME


def weights_identity(folder: Path, memo: DigestMemo) -> list[list]:
    """[name, size, sha256] of each weight file of a local model folder ([] for anything else)."""
    if not folder.is_dir():
        return []
    return [[f.name, f.stat().st_size, memo.digest(f)] for f in weight_files(folder)]
