"""rewardmill: score datasets with reward models, correctly and fast."""

from .engine import EngineOptions
from .loading import LoadOptions, ModelLoadError
from .model import RewardModel
from .pipeline import Summary, score_file
from .rows import Columns, RowError, Shape

__version__ = "0.1.0"
__all__ = [
    "Columns",
    "EngineOptions",
    "LoadOptions",
    "ModelLoadError",
    "RewardModel",
    "RowError",
    "Shape",
    "Summary",
    "score_file",
]
