"""The `rewardmill` command line (`rewardmill.cli:app`, the console script)."""

from .app import app

__all__ = ["app"]
