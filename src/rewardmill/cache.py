"""A cache of results kept across runs: SQLite in WAL mode (safe when several processes read and write at once),
keyed by the SHA-256 of a key string that holds everything the result depends on. Used for a judge's answers and
for reward-model scores (`--cache DIR`). Only results that came back are stored, never errors."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from pathlib import Path


class ResultCache:
    def __init__(self, folder: str | Path, name: str):
        self.path = Path(folder) / f"{name}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        # Switching to WAL needs a moment alone with the file: another process opening it at the same instant
        # gets "database is locked" at once (the busy timeout does not cover it), so try again for a while.
        for attempt in range(100):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self.db.commit()
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 99:
                    raise
                time.sleep(0.05 + random.random() * 0.1)

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found = {}
        for key in keys:
            row = self.db.execute("SELECT value FROM results WHERE key = ?", (self.digest(key),)).fetchone()
            if row is not None:
                found[key] = row[0]
        return found

    def put_many(self, values: dict[str, str]) -> None:
        if values:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                                    [(self.digest(k), v) for k, v in values.items()])

    def close(self) -> None:
        self.db.close()


def answer_cache(folder: str | Path) -> ResultCache:
    return ResultCache(folder, "judge-answers")


def score_cache(folder: str | Path) -> ResultCache:
    return ResultCache(folder, "reward-scores")
