"""vLLM's pooling routes: `/classify`, `/pooling` and `/score` (also `/v1/score`), as verl and vLLM clients call
them; vLLM's response envelope and activation (sigmoid for one label, softmax for several, unless turned off)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...reward_models.adapters.base import Encoded
from ..errors import HTTPError
from ..protocols import ClassifyRequest, ScoreRequest, listing
from ..service import RewardService, timing_headers


def router(service: RewardService) -> APIRouter:
    routes = APIRouter()
    model = service.model

    async def pooled(request: Request, body: ClassifyRequest, kind: str):
        started = time.perf_counter()
        if body.messages is not None:
            if body.input is not None:
                raise HTTPError(422, "give input or messages, not both", param="messages")
            thunks = [lambda a: a.encode(body.messages)]
            param, characters = "messages", sum(len(str(m.get("content", ""))) for m in body.messages)
        else:
            inputs = body.input
            if inputs is None or inputs == []:
                raise HTTPError(422, "You must pass at least one prompt", param="input")
            if isinstance(inputs, str) or (isinstance(inputs, list) and isinstance(inputs[0], int)):
                inputs = [inputs]
            special = True if body.add_special_tokens is None else body.add_special_tokens
            thunks = [(lambda a, x=x: a.encode_ids(x)) if isinstance(x, list) else
                      (lambda a, x=x: a.encode_text(x, special)) for x in inputs]
            param, characters = "input", sum(len(x) for x in inputs if isinstance(x, str))
        with service.admitted(len(thunks)) as release:
            encoded = await service.encode(thunks, param)
            if body.truncate_prompt_tokens not in (None, -1):
                keep = body.truncate_prompt_tokens
                encoded = [Encoded(e.input_ids[-keep:]) if keep and len(e) > keep else e for e in encoded]
            tokenized = time.perf_counter()
            outputs, works = await service.run(request, encoded, param, release)
        activated = body.activated()
        data = []
        for index, output in enumerate(outputs):
            probs, label = service.labels(output, activated)
            data.append({"index": index, "label": label, "probs": probs, "num_classes": len(probs)}
                        if kind == "classify" else {"index": index, "object": "pooling", "data": probs})
        body_out = listing("classify" if kind == "classify" else "pool", body.model or model.name, data,
                           sum(map(len, encoded)))
        return JSONResponse(body_out, headers=timing_headers(works, started, tokenized, sum(map(len, encoded)),
                                                             characters))

    @routes.post("/classify")
    async def classify(request: Request, body: ClassifyRequest):
        return await pooled(request, body, "classify")

    @routes.post("/pooling")
    async def pooling(request: Request, body: ClassifyRequest):
        return await pooled(request, body, "pooling")

    async def score_pairs(request: Request, body: ScoreRequest):
        started = time.perf_counter()
        try:
            pairs = body.pairs()
        except ValueError as error:
            raise HTTPError(422, str(error)) from None
        thunks = [lambda a, q=q, d=d: a.encode([{"role": "user", "content": q}, {"role": "assistant", "content": d}])
                  for q, d in pairs]
        with service.admitted(len(thunks)) as release:
            encoded = await service.encode(thunks, "pair")
            tokenized = time.perf_counter()
            outputs, works = await service.run(request, encoded, "pair", release)
        activated = body.activated()
        data = [{"index": i, "object": "score", "score": service.labels(o, activated)[0][0]}
                for i, o in enumerate(outputs)]
        return JSONResponse(listing("score", body.model or model.name, data, sum(map(len, encoded))),
                            headers=timing_headers(works, started, tokenized, sum(map(len, encoded)),
                                                   sum(len(q) + len(d) for q, d in pairs)))

    routes.post("/score")(score_pairs)
    routes.post("/v1/score")(score_pairs)

    return routes
