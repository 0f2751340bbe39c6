"""The model flags of a command that may rate with a local LLM judge (dpo, eval): the judge takes --device, --dtype
and --batch-size, and any other model flag is refused when no reward model is there to take it."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..reward_models.spec import ModelSpec
from .flags import model_spec


def local_judge_flags(model_flags: dict[str, Any]) -> dict[str, Any]:
    """--device, --dtype and --batch-size, as `JudgeSpec`'s fields."""
    spec = model_spec("judge", model_flags)
    return {"device": spec.load.device, "dtype": spec.load.dtype, "batch_size": spec.engine.batch_size}


def without_local_judge_flags(spec: ModelSpec) -> ModelSpec:
    """The spec with --device, --dtype and --batch-size at their defaults (they went to the judge)."""
    load = dataclasses.replace(spec.load, device=None, dtype="default")
    return dataclasses.replace(spec, load=load, engine=dataclasses.replace(spec.engine, batch_size=None))


def refuse_for_local_judge(model: str, model_flags: dict[str, Any], why: str) -> None:
    """Refuse every model flag a local judge does not take."""
    without_local_judge_flags(model_spec(model, model_flags)).refuse_model_options(why)
