"""Reward normalization: the mean and standard deviation of a model's scores on a reference set, saved by
`rewardmill calibrate` and applied by `--normalize FILE` (score, serve) as (score - mean) / std.

A calibration belongs to one model with one set of scoring options: the file keeps the model's identity, and
applying it to another model (or the same one with other options that change scores) is refused, naming what
differs. Weight files are compared by name and size, not by time, so a copied model keeps its calibration.

`calibrate_file` (and its two halves, `open_calibration` before the model loads and `calibrate_job` after) scores
the reference set on the committed-run loop (`runs.committed`) with the same checks before the work as every
command; it commits nothing, since a calibration is one number pair from every row: the file is written at the end.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import OptionsError
from ..rows.readers import DEFAULT_ENCODING
from ..rows.scoring import RowOptions, score_row_chunks
from ..runs.checkpoint import describe_changes
from ..runs.committed import Chunk, Progress, run_committed
from ..runs.job import Job, check_output
from ..runs.preflight import open_input
from ..scorer import Scorer

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


def open_calibration(input_path: str | Path, output: str | Path, *, split: str | None = None,
                     encoding: str = DEFAULT_ENCODING) -> Job:
    """The reference set opened and the calibration file's place checked (a folder that can be written, not the
    input), or an InputError saying what is wrong: before any model loads."""
    source = open_input(input_path, split, encoding)
    check_output(input_path, Path(output), resume=False, overwrite=False)
    return Job(source, Path(output), str(input_path), split, encoding=encoding)


def calibrate_job(job: Job, scorer: Scorer, options: RowOptions = RowOptions()) -> tuple[Calibration, int]:
    """Score an opened reference set, save the calibration of every numeric score to the job's output, and
    return it with the number of rows that had errors (left out)."""
    if not hasattr(scorer, "identity") or not hasattr(scorer, "normalize_with"):
        raise OptionsError(f"calibrate applies to reward models, not {scorer.name}")
    columns = options.columns
    scores: list[float] = []
    rows_with_errors = 0

    def step(rows: Iterator[Any], options: RowOptions, on_progress: Progress | None) -> Iterator[Chunk]:
        for chunk in score_row_chunks(scorer, rows, options, on_progress):
            yield Chunk([], len(chunk), {"scores": _numbers(chunk, (columns.score, columns.scores, columns.ratings)),
                                         "rows_with_errors": sum(bool(row.get(columns.error)) for row in chunk)})

    def count(tally: dict[str, Any]) -> None:
        nonlocal rows_with_errors
        scores.extend(tally["scores"])
        rows_with_errors += tally["rows_with_errors"]

    run_committed(job, None, options, step, on_tally=count)
    calibration = calibrate(scorer.identity, scores, source=job.input)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(job.output)
    return calibration, rows_with_errors


def calibrate_file(input_path: str | Path, output: str | Path, scorer: Scorer, options: RowOptions = RowOptions(),
                   *, split: str | None = None, encoding: str = DEFAULT_ENCODING) -> tuple[Calibration, int]:
    """`rewardmill calibrate` as a function: the calibration of `scorer` on `input_path`, saved to `output`, and
    the number of rows that had errors (left out)."""
    return calibrate_job(open_calibration(input_path, output, split=split, encoding=encoding), scorer, options)


def _numbers(rows: list[dict], names: tuple[str, ...]) -> list[float]:
    """Every number in the rows' output columns (one score, or a list of them)."""
    found = []
    for row in rows:
        for name in names:
            value = row.get(name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (int, float)):
                    found.append(item)
    return found
