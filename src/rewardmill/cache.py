"""A cache of results kept across runs: SQLite in WAL mode (safe when several processes read and write at once),
keyed by the SHA-256 of a key string that holds everything the result depends on. Used for a judge's answers and
for reward-model scores (`--cache DIR`). Only results that came back are stored, never errors.

A cache file that SQLite cannot read (not a database, a damaged page) is a `CacheError` naming the file, raised
when the cache is opened or when the damaged part is first read; it is never silently replaced, since the same
folder may be in use by another run at that moment."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from pathlib import Path

from .errors import InputError


class CacheError(InputError):
    """A cache folder or file that cannot be used."""


def cache_problem(path: Path | None, error: BaseException) -> str:
    """One line naming the cache file, what is wrong with it and what to do."""
    reason = getattr(error, "strerror", None) or str(error)
    return (f"{path}: this cache file cannot be used ({reason}); delete it to start an empty cache, or choose "
            "another --cache folder")


class ResultCache:
    def __init__(self, folder: str | Path, name: str):
        self.path = Path(folder) / f"{name}.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._prepare()
        except (OSError, sqlite3.Error) as error:
            raise CacheError(cache_problem(self.path, error)) from None

    def _prepare(self) -> None:
        # Switching to WAL needs a moment alone with the file: another process opening it at the same instant
        # gets "database is locked" at once (the busy timeout does not cover it), so try again for a while.
        for attempt in range(100):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self.db.commit()
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 99:
                    raise
                time.sleep(0.05 + random.random() * 0.1)

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found = {}
        try:
            for key in keys:
                row = self.db.execute("SELECT value FROM results WHERE key = ?", (self.digest(key),)).fetchone()
                if row is not None:
                    found[key] = row[0]
        except sqlite3.DatabaseError as error:
            raise CacheError(cache_problem(self.path, error)) from None
        return found

    def put_many(self, values: dict[str, str]) -> None:
        if not values:
            return
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                                    [(self.digest(k), v) for k, v in values.items()])
        except sqlite3.DatabaseError as error:
            raise CacheError(cache_problem(self.path, error)) from None

    def close(self) -> None:
        self.db.close()


def answer_cache(folder: str | Path) -> ResultCache:
    return ResultCache(folder, "judge-answers")


def score_cache(folder: str | Path) -> ResultCache:
    return ResultCache(folder, "reward-scores")
