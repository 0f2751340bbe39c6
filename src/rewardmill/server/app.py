"""The reward server: OpenRLHF's, vLLM's and rewardmill's own routes over one reward model and one micro-batcher.

`create_app` puts together the `RewardService` (admission, encoding, the batcher, disconnects, the over-long
policy, metrics: see `service`), one router per protocol (`routes/`), the `Guard` middleware (API key, body size,
request metrics) and the error answers (`errors`). Bad input is a 422 naming the item, a body over the limit 413.
Request bodies are never logged. Timing headers follow text-embeddings-inference (ms).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..reward_models.model import RewardModel
from .errors import install_error_handlers
from .guard import Guard
from .metrics import Metrics
from .options import ServerOptions
from .routes import health, openrlhf, rewardmill, vllm
from .service import RewardService


def create_app(model: RewardModel, options: ServerOptions = ServerOptions()) -> FastAPI:
    metrics = Metrics()
    service = RewardService(model, options, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()
            service.encoders.shutdown(wait=False)
            service.row_threads.shutdown(wait=False)

    app = FastAPI(title="rewardmill reward server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    app.add_middleware(Guard, options=options, metrics=metrics, depth=lambda: service.batcher.depth)
    install_error_handlers(app)
    for protocol in (health, openrlhf, vllm, rewardmill):
        app.include_router(protocol.router(service))
    return app
