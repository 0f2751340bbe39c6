"""The reward server's own settings (`rewardmill serve` flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import OptionsError


@dataclass(frozen=True)
class ServerOptions:
    max_delay: float = 0.002  # seconds an idle model waits for a first request's company
    max_queue: int = 4096  # inputs waiting; past it, 503
    max_body_bytes: int = 32 * 1024 * 1024
    api_key: str | None = None  # every route but /health needs `Authorization: Bearer <key>`
    retry_after: int = 1  # seconds, in a 503's Retry-After
    # an input over the maximum length: "truncate" keeps its end (or the side --truncation names), "error" is a 422
    over_long: Literal["truncate", "error"] = "truncate"

    def __post_init__(self) -> None:
        if self.over_long not in ("truncate", "error"):
            raise OptionsError(f"over_long must be truncate or error, got {self.over_long!r}")
