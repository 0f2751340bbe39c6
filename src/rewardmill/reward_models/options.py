"""The option groups of a reward model, how family options are checked, and the flat-keyword convenience.

Options come in groups, each declared by the module that uses it: `LoadOptions` (loading.py), `TextOptions`
(adapters/base.py), one options class per model family (declared by its adapter as `Adapter.Options`),
`EngineOptions` (engine.py) and `CpuOptions` (cpu.py). A family option that the chosen family does not take is
an error that says which families do take it, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import OptionsError
from .adapters import ADAPTERS, Adapter, FamilyOptions, TextOptions
from .cpu import CpuOptions
from .engines.transformers_engine import EngineOptions
from .loading import LoadOptions

# Flat keyword -> (group, field) for `RewardModel.from_pretrained(**options)`; anything else is a family option.
_GROUPS: dict[str, tuple[str, str]] = {
    **{f.name: ("load", f.name) for f in dataclasses.fields(LoadOptions)},
    **{f.name: ("text", f.name) for f in dataclasses.fields(TextOptions)},
    **{f.name: ("engine", f.name) for f in dataclasses.fields(EngineOptions)},
    "cpu_kernel": ("cpu", "kernel"),
    "threads": ("cpu", "threads"),
    "kind": ("kind", "kind"),
    "quirks": ("quirks", "quirks"),
}
_FLAGS = {"model_kwargs": "--model-kwarg", "vllm_options": "--vllm-option", "token_type_ids": "--token-type-ids/--no-token-type-ids"}


def family_option_kinds() -> dict[str, list[str]]:
    """Every family option name -> the kinds that take it."""
    kinds: dict[str, list[str]] = {}
    for adapter in ADAPTERS:
        for f in dataclasses.fields(adapter.Options):
            kinds.setdefault(f.name, []).append(adapter.kind)
    return kinds


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _family_defaults() -> dict[str, Any]:
    return {f.name: _default(f) for adapter in ADAPTERS for f in dataclasses.fields(adapter.Options)}


def flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def split_flat(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `RewardModel.load` from flat ones (`dtype=..., batch_size=..., alpha=...`)."""
    groups: dict[str, dict[str, Any]] = {"load": {}, "text": {}, "engine": {}, "cpu": {}}
    out: dict[str, Any] = {}
    family: dict[str, Any] = {}
    known_family = family_option_kinds()
    if "torch_dtype" in options:  # the name transformers used before `dtype` (seed 000's attribute)
        if options.get("dtype") is not None:
            raise OptionsError("give dtype once: torch_dtype is another name for dtype")
        options = {**{k: v for k, v in options.items() if k != "torch_dtype"}, "dtype": options["torch_dtype"]}
    for name, value in options.items():
        if name in _GROUPS:
            group, field = _GROUPS[name]
            if group in groups:
                if value is not None:
                    groups[group][field] = value
            elif value is not None:
                out[group] = value
        elif name in known_family:
            family[name] = value
        else:
            raise OptionsError(f"unknown option {name!r}")
    return {
        **out,
        "load": LoadOptions(**groups["load"]),
        "text": TextOptions(**groups["text"]),
        "engine": EngineOptions(**groups["engine"]),
        "cpu": CpuOptions(**groups["cpu"]),
        "family": family,
    }


def given_family_options(family: FamilyOptions | Mapping[str, Any] | None) -> dict[str, Any]:
    """The family options a caller set: a mapping's non-empty values, or an options object's non-default fields."""
    if family is None:
        return {}
    if isinstance(family, FamilyOptions):
        return {f.name: getattr(family, f.name) for f in dataclasses.fields(family) if getattr(family, f.name) != _default(f)}
    defaults = _family_defaults()
    return {name: value for name, value in family.items() if value != defaults.get(name)}


def resolve_family_options(
    adapter: type[Adapter], family: FamilyOptions | Mapping[str, Any] | None, quirk: Mapping[str, Any], why: str = ""
) -> FamilyOptions:
    """The adapter's options: the quirks table's values, overridden by what the caller set. A set option the
    family does not take is an OptionsError naming the families that take it."""
    given = given_family_options(family)
    accepted = {f.name for f in dataclasses.fields(adapter.Options)}
    takers = family_option_kinds()
    problems = []
    for name in given:
        if name not in accepted:
            where = f"it applies to {', '.join(takers[name])} models" if name in takers else "no model family takes it"
            problems.append(f"{flag(name)} does not apply to {adapter.kind} models; {where}")
    if problems:
        detected = f" (this model: {why})" if why else ""
        raise OptionsError("; ".join(problems) + detected)
    merged = {name: value for name, value in quirk.items() if name in accepted}
    if "model_kwargs" in accepted:
        given = {**given, "model_kwargs": {**quirk.get("model_kwargs", {}), **given.get("model_kwargs", {})}}
    merged.update(given)
    return adapter.Options(**merged)
