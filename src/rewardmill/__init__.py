"""rewardmill: score datasets with reward models, LLM judges and baselines, correctly and fast.

The names below are imported on first use, so `import rewardmill` (and `rewardmill.clients`, which trainers
load) costs neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Columns": "rows.shapes", "Shape": "rows.shapes",
    "RowOptions": "rows.scoring", "score_inputs": "rows.scoring", "score_row_chunks": "rows.scoring",
    "score_rows": "rows.scoring",
    "Item": "scorer", "ItemResult": "scorer", "Scorer": "scorer",
    "OptionsError": "errors", "RewardmillError": "errors", "RowError": "errors",
    **{name: "reward_models.family_options" for name in (
        "FamilyOptions", "ClassifierOptions", "DecoderOptions", "MultiObjectiveOptions", "PairOptions",
        "RewardTokenOptions")},
    "TextOptions": "reward_models.options",
    "LengthScorer": "reward_models.baselines",
    "CpuOptions": "reward_models.options",
    "Engine": "reward_models.engines.transformers_engine", "EngineOptions": "reward_models.options",
    "LoadOptions": "reward_models.options", "ModelLoadError": "reward_models.loading",
    "RewardModel": "reward_models.model", "ModelSpec": "reward_models.spec",
    "Summary": "runs.job", "score_file": "runs.job",
    "DPOColumns": "preferences.formatting", "DPOOptions": "preferences.formatting",
    "DPOSummary": "preferences.formatting", "format_dpo": "preferences.formatting",
    "open_dpo_job": "preferences.pipeline", "run_dpo": "preferences.pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rewardmill' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from .errors import OptionsError, RewardmillError, RowError
    from .preferences.formatting import DPOColumns, DPOOptions, DPOSummary, format_dpo
    from .preferences.pipeline import open_dpo_job, run_dpo
    from .reward_models.baselines import LengthScorer
    from .reward_models.engines.transformers_engine import Engine
    from .reward_models.family_options import (
        ClassifierOptions,
        DecoderOptions,
        FamilyOptions,
        MultiObjectiveOptions,
        PairOptions,
        RewardTokenOptions,
    )
    from .reward_models.loading import ModelLoadError
    from .reward_models.model import RewardModel
    from .reward_models.options import CpuOptions, EngineOptions, LoadOptions, TextOptions
    from .reward_models.spec import ModelSpec
    from .rows.scoring import RowOptions, score_inputs, score_row_chunks, score_rows
    from .rows.shapes import Columns, Shape
    from .runs.job import Summary, score_file
    from .scorer import Item, ItemResult, Scorer
