"""Reward normalization: the mean and standard deviation of a model's scores on a reference set, saved by
`rewardmill calibrate` and applied by `--normalize FILE` (score, serve) as (score - mean) / std.

A calibration belongs to one model with one set of scoring options: the file keeps the model's identity, and
applying it to another model (or the same one with other options that change scores) is refused, naming what
differs. Weight files are compared by name and size, not by time, so a copied model keeps its calibration.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import OptionsError
from ..runs.checkpoint import describe_changes

COMPARED = ("model", "commit", "kind", "options", "outputs", "max_length", "truncation", "dtype")


def comparable(identity: dict[str, Any]) -> dict[str, Any]:
    """The parts of a model's identity that a calibration must match."""
    out = {key: identity.get(key) for key in COMPARED}
    out["weights"] = [[name, size] for name, size, *_ in identity.get("weights", [])]
    return json.loads(json.dumps(out, default=str))


@dataclass(frozen=True)
class Calibration:
    mean: float
    std: float
    count: int
    model: dict[str, Any]
    source: str = ""
    created: str = ""

    def apply(self, value: float) -> float:
        return (value - self.mean) / self.std

    def check(self, identity: dict[str, Any]) -> None:
        changes = describe_changes(self.model, comparable(identity))
        if changes:
            raise OptionsError(f"--normalize: this calibration was made for another model or other options: "
                               f"{'; '.join(changes)}. Run rewardmill calibrate again with this model and options")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            calibration = cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise OptionsError(f"--normalize {path}: not a calibration file written by rewardmill calibrate ({error})") \
                from None
        if not (math.isfinite(calibration.mean) and math.isfinite(calibration.std) and calibration.std > 0):
            raise OptionsError(f"--normalize {path}: mean {calibration.mean} and std {calibration.std} cannot normalize")
        return calibration


def calibrate(identity: dict[str, Any], scores: Iterable[float], source: str = "") -> Calibration:
    """Mean and (population) standard deviation of `scores`; at least two different values are needed."""
    values = [float(s) for s in scores]
    if len(values) < 2:
        raise OptionsError(f"calibration needs at least 2 scored responses; {source or 'the data'} gave {len(values)}")
    std = statistics.pstdev(values)
    if std == 0:
        raise OptionsError("every response got the same score, so there is no spread to normalize by")
    return Calibration(statistics.fmean(values), std, len(values), comparable(identity), source,
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
