"""A judge's answers kept across runs: SQLite in WAL mode (safe when several processes write at once), keyed by a
hash of (backend, model, generation settings, the request). Only answers that came back are kept, never errors,
so a failed request is asked again next time."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path


class AnswerCache:
    def __init__(self, folder: str | Path):
        self.path = Path(folder) / "judge-answers.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self.db.commit()

    @staticmethod
    def key(request_key: str) -> str:
        return hashlib.sha256(request_key.encode("utf-8")).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found = {}
        for key in keys:
            row = self.db.execute("SELECT text FROM answers WHERE key = ?", (self.key(key),)).fetchone()
            if row is not None:
                found[key] = row[0]
        return found

    def put_many(self, answers: dict[str, str]) -> None:
        if answers:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO answers (key, text) VALUES (?, ?)",
                                    [(self.key(k), v) for k, v in answers.items()])

    def close(self) -> None:
        self.db.close()
