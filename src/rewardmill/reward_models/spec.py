"""`ModelSpec`: which reward model to load and how to load and run it, as one serialisable object.

The CLI builds one from its flags, the Python API from its arguments (`RewardModel.load(spec)`, `spec.scorer()`),
and the server and each Ray actor load their model from one. A loaded `RewardModel` keeps its spec (`.spec`), so a
run can record `spec.to_dict()`: plain JSON that never holds the hub token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..errors import OptionsError
from ..option_fields import LOAD, flag_of, option
from .family_options import FAMILY_OPTIONS, FamilyOptions, given_family_options
from .options import GROUPS, CpuOptions, EngineOptions, LoadOptions, TextOptions

if TYPE_CHECKING:
    from ..scorer import Scorer

# The model families, as `adapters.KINDS` lists them (checked by the tests): named here so that `--kind` shows its
# choices without importing the adapters, which import torch.
Kind = Literal["auto", "multi-objective", "reward-token", "value-head", "pair", "classifier", "similarity"]
KIND_CHOICES: tuple[str, ...] = get_args(Kind)


@dataclass(frozen=True)
class ModelSpec:
    """A reward model (`model`: hub id, local directory or a baseline name; None: the default model) and its
    options, group by group. `family` holds the family options as the family's options class or a mapping (only
    the options the chosen family takes may be set). `quirks` names a JSON file of extra quirks-table entries."""

    model: str | None = None
    kind: Kind = option("auto", flag="--kind", help="Model family: auto-detect from the config, or force one.",
                        panel=LOAD)
    load: LoadOptions = field(default_factory=LoadOptions)
    text: TextOptions = field(default_factory=TextOptions)
    family: FamilyOptions | Mapping[str, Any] = field(default_factory=dict)
    engine: EngineOptions = field(default_factory=EngineOptions)
    cpu: CpuOptions = field(default_factory=CpuOptions)
    quirks: Path | None = option(
        None, help="JSON file of extra model quirks (see the README), tried before the built-in table.", panel=LOAD)

    def scorer(self) -> Scorer:
        """The scorer this spec describes: a baseline by its name, else the loaded `RewardModel`."""
        from .baselines import baseline

        chosen = baseline(self.model) if self.model is not None else None
        if chosen is not None:
            self.refuse_model_options(f"the {self.model} baseline runs no model")
            return chosen
        from .model import RewardModel

        return RewardModel.load(self.model, **self.load_arguments())

    def load_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `RewardModel.load` besides the name."""
        return {"kind": self.kind, "load": self.load, "text": self.text, "family": self.family, "engine": self.engine,
                "cpu": self.cpu, "quirks": self.quirks}

    def reusing(self, recorded: dict[str, Any] | None) -> ModelSpec:
        """This spec with each automatic choice replaced by the one an interrupted run recorded (`--resume`)."""
        from .choices import reuse

        load, engine, cpu = reuse(recorded, self.load, self.engine, self.cpu)
        return dataclasses.replace(self, load=load, engine=engine, cpu=cpu)

    def refuse_model_options(self, why: str) -> None:
        """An OptionsError naming every reward-model option that was set, when none of them can apply."""
        defaults = ModelSpec(self.model, cpu=self.cpu)
        used = [flag(name) for name in given_family_options(self.family)]
        used += [flag(name) for name in ("kind", "quirks") if getattr(self, name) != getattr(defaults, name)]
        for group in ("load", "text", "engine"):
            mine, default = getattr(self, group), getattr(defaults, group)
            used += [flag(f.name) for f in dataclasses.fields(mine)
                     if getattr(mine, f.name) != getattr(default, f.name)]
        if used:
            raise OptionsError(f"{why}, so these options do not apply to it: {', '.join(used)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; the hub token is left out (a spec read back loads with HF_TOKEN or the hub login)."""
        groups = {name: _plain(dataclasses.asdict(getattr(self, name))) for name in GROUPS}
        groups["load"].pop("token", None)
        return {"model": self.model, "kind": self.kind, "quirks": None if self.quirks is None else str(self.quirks),
                **groups, "family": _plain(given_family_options(self.family))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """The spec `to_dict` described (without its token)."""
        unknown = set(data) - {"model", "kind", "quirks", "family", *GROUPS}
        if unknown:
            raise OptionsError(f"a model spec has no {', '.join(sorted(unknown))}")
        quirks = data.get("quirks")
        return cls(data.get("model"), kind=data.get("kind", "auto"), quirks=None if quirks is None else Path(quirks),
                   family=dict(data.get("family") or {}),
                   **{name: group(**(data.get(name) or {})) for name, group in GROUPS.items()})


def _plain(value: Any) -> Any:
    """JSON's shapes: mappings as dicts, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def flag(name: str) -> str:
    """The flag of an option field, by the field's name, for error messages (--kind, --model-kwarg, ...)."""
    for cls in (ModelSpec, *GROUPS.values(), *FAMILY_OPTIONS):
        for f in dataclasses.fields(cls):
            declared = flag_of(f)
            if f.name == name and declared is not None:
                return declared.name
    return "--" + name.replace("_", "-")
