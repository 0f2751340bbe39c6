"""Known per-model quirks, as data: which family, padding side, reward token, template, BOS policy.

The built-in table is `quirks.json` beside this file. Users add entries (or override built-in ones) with a
JSON file of the same shape (`--quirks FILE`). An entry matches when its `match` glob matches the model name
or path, or its `architecture` equals one of the config's architectures; user entries are tried first.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import RewardmillError

FIELDS = {
    "kind": str, "padding_side": str, "reward_token_id": int, "chat_template": str, "bos": str,
    "objective_names": list, "token_type_ids": bool, "model_kwargs": dict, "max_length": int, "note": str,
}
BOS_POLICIES = ("template", "add", "strip")


class QuirksError(RewardmillError, ValueError):
    pass


@dataclass(frozen=True)
class Quirk:
    match: str | None = None
    architecture: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def applies_to(self, name: str, architectures: list[str]) -> bool:
        if self.architecture and self.architecture in architectures:
            return True
        if self.match:
            candidates = {name, name.rstrip("/"), Path(name).name}
            return any(fnmatch.fnmatchcase(c, self.match) for c in candidates)
        return False


def _parse(entries: Any, source: str) -> list[Quirk]:
    if not isinstance(entries, list):
        raise QuirksError(f"{source}: expected a JSON list of quirk entries")
    quirks = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not ("match" in entry or "architecture" in entry):
            raise QuirksError(f"{source}: entry {i} needs a 'match' glob or an 'architecture' name")
        settings = {k: v for k, v in entry.items() if k not in ("match", "architecture")}
        for key, value in settings.items():
            if key not in FIELDS:
                raise QuirksError(f"{source}: entry {i} has unknown field {key!r} (known: {', '.join(FIELDS)})")
            if not isinstance(value, FIELDS[key]) or (FIELDS[key] is int and isinstance(value, bool)):
                raise QuirksError(f"{source}: entry {i} field {key!r} must be {FIELDS[key].__name__}")
        if settings.get("padding_side", "right") not in ("left", "right"):
            raise QuirksError(f"{source}: entry {i} padding_side must be left or right")
        if settings.get("bos", "template") not in BOS_POLICIES:
            raise QuirksError(f"{source}: entry {i} bos must be one of {', '.join(BOS_POLICIES)}")
        quirks.append(Quirk(entry.get("match"), entry.get("architecture"), settings))
    return quirks


def builtin_quirks() -> list[Quirk]:
    text = resources.files("rewardmill.reward_models").joinpath("quirks.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "built-in quirks.json")


def load_quirks(path: str | Path | None = None) -> list[Quirk]:
    """User entries (tried first) followed by the built-in table."""
    user: list[Quirk] = []
    if path is not None:
        try:
            user = _parse(json.loads(Path(path).read_text(encoding="utf-8")), str(path))
        except (OSError, json.JSONDecodeError) as error:
            raise QuirksError(f"cannot read quirks file {path}: {error}") from None
    return user + builtin_quirks()


def find_quirk(quirks: list[Quirk], name: str, architectures: list[str]) -> Quirk | None:
    return next((q for q in quirks if q.applies_to(name, architectures)), None)
