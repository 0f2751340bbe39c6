"""`rewardmill serve`: a reward server for online RL trainers (OpenRLHF, verl, TRL), with dynamic batching
across requests. Needs the `serve` extra (FastAPI, uvicorn, prometheus_client)."""

from __future__ import annotations

from .app import create_app
from .options import ServerOptions

__all__ = ["ServerOptions", "create_app"]
