"""Run the reward server with uvicorn. SIGTERM (and Ctrl-C) stop accepting connections, let the requests in flight
finish, then drain the batcher and exit."""

from __future__ import annotations

from ..errors import OptionsError
from .app import create_app
from .options import ServerOptions


def run_server(model, *, host: str = "127.0.0.1", port: int = 8000, options: ServerOptions = ServerOptions(),
               access_log: bool = False) -> None:
    import uvicorn

    from ..reward_models.model import RewardModel

    if not isinstance(model, RewardModel):
        raise OptionsError(f"rewardmill serve serves reward models; {getattr(model, 'name', model)} is not one")
    uvicorn.run(create_app(model, options), host=host, port=port, access_log=access_log, log_level="info",
                timeout_graceful_shutdown=None)
