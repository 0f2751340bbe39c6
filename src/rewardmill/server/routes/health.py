"""`/health`, `/v1/models` (vLLM's and OpenAI's model listing) and `/metrics` (Prometheus)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response

from ..service import RewardService


def router(service: RewardService) -> APIRouter:
    routes = APIRouter()
    model, metrics = service.model, service.metrics

    @routes.get("/health")
    async def health():
        return {"status": "ok"}

    @routes.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model.name, "object": "model", "created": int(time.time()),
                                            "owned_by": "rewardmill", "root": model.name,
                                            "max_model_len": model.adapter.max_length}]}

    @routes.get("/metrics")
    async def metrics_route():
        return Response(metrics.render(), media_type=metrics.content_type)

    return routes
