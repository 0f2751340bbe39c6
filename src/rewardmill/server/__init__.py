"""`rewardmill serve`: a reward server for online RL trainers (OpenRLHF, verl, TRL), with dynamic batching
across requests. Needs the `serve` extra (FastAPI, uvicorn, prometheus_client)."""

from __future__ import annotations

from .app import ServerOptions, create_app

__all__ = ["ServerOptions", "create_app"]
