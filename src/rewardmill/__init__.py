"""rewardmill: score datasets with reward models, LLM judges and baselines, correctly and fast."""

from .adapters import FamilyOptions, TextOptions
from .baselines import LengthScorer
from .cpu import CpuOptions
from .engine import Engine, EngineOptions
from .errors import OptionsError, RewardmillError, RowError
from .loading import LoadOptions, ModelLoadError
from .model import RewardModel
from .dpo_pipeline import open_dpo_job, run_dpo
from .pipeline import Summary, score_file
from .preferences import DPOColumns, DPOOptions, DPOSummary, format_dpo
from .row_scoring import RowOptions, score_inputs, score_row_chunks, score_rows
from .rows import Columns, Shape
from .scorer import Item, ItemResult, Scorer

__version__ = "0.1.0"
__all__ = [
    "Columns",
    "DPOColumns",
    "DPOOptions",
    "DPOSummary",
    "CpuOptions",
    "Engine",
    "EngineOptions",
    "FamilyOptions",
    "Item",
    "ItemResult",
    "LengthScorer",
    "LoadOptions",
    "ModelLoadError",
    "OptionsError",
    "RewardModel",
    "RewardmillError",
    "RowError",
    "RowOptions",
    "Scorer",
    "Shape",
    "Summary",
    "TextOptions",
    "format_dpo",
    "open_dpo_job",
    "run_dpo",
    "score_file",
    "score_inputs",
    "score_row_chunks",
    "score_rows",
]
