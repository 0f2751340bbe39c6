"""OpenRLHF's `/get_reward`: fully rendered query texts in, `rewards`/`scores` and `extra_logs` out."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..protocols import RewardRequest
from ..service import RewardService, timing_headers


def router(service: RewardService) -> APIRouter:
    routes = APIRouter()
    model = service.model

    @routes.post("/get_reward")
    async def get_reward(request: Request, body: RewardRequest):
        started = time.perf_counter()
        with service.admitted(len(body.query)) as release:
            encoded = await service.encode([lambda a, q=q: a.encode_text(q, False) for q in body.query], "query")
            tokenized = time.perf_counter()
            outputs, works = await service.run(request, encoded, "query", release) if encoded else ([], [])
        rewards = [float(o["score"]) for o in outputs]
        extra = {name: [float(o[name]) for o in outputs] for name in model.output_names if name != "score"}
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": extra},
                            headers=timing_headers(works, started, tokenized, sum(map(len, encoded)),
                                                   sum(map(len, body.query))))

    return routes
