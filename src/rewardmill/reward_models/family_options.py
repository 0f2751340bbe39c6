"""The options of each model family, each field declaring its flag, and how a caller's family options are checked.

Each adapter declares its options class as `Adapter.Options` (e.g. `ClassifierAdapter.Options = ClassifierOptions`);
the classes live here, apart from the adapters, so that the CLI can build its flags without importing torch. A family
option that the chosen family does not take is an error that says which families do take it, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..errors import OptionsError
from ..option_fields import INPUT, OUTPUTS, api_only, field_default, option
from .quirks import BOS_POLICIES

if TYPE_CHECKING:
    from .adapters.base import Adapter

PaddingSide = Literal["left", "right"]
PADDING_SIDES: tuple[str, ...] = get_args(PaddingSide)
ScoreToken = Literal["last-non-pad", "last-token"]
SCORE_TOKENS: tuple[str, ...] = get_args(ScoreToken)

_LABEL_HELP = "Classifier and pair models with several labels: the label name or index to use as score."


@dataclass(frozen=True)
class FamilyOptions:
    """Base of the per-family options. Each adapter declares its own subclass as `Options`."""


@dataclass(frozen=True)
class ForwardOptions(FamilyOptions):
    """Options of families that call the model's forward: extra keyword arguments for every call."""

    model_kwargs: Mapping[str, Any] = option(
        flag="--model-kwarg", default_factory=dict, help="KEY=VALUE passed to every forward call (VALUE parsed as "
        "JSON when it can be, e.g. alpha=10); repeatable.", panel=INPUT, show_default=False, cli_type=list[str],
        cli_default=None, parse=lambda pairs: _key_values(pairs, "--model-kwarg"))


def _key_values(pairs: list[str] | None, flag: str) -> dict:
    from .options import parse_key_values

    return parse_key_values(pairs, flag)


@dataclass(frozen=True)
class DecoderOptions(ForwardOptions):
    """Options of every chat-template family. None: the quirks table's value, else the family's default."""

    chat_template: str | None = option(
        None, help="Chat-template families: a chat template (Jinja string or file) for models without one, or to "
        "override it.", panel=INPUT)
    padding_side: PaddingSide | None = option(
        None, help="Chat-template families: padding side (default: what the family or the quirks table needs; "
        "scores do not depend on it).", panel=INPUT, show_default=False)
    bos: str | None = api_only(None, why="a quirks-table setting (template | add | strip)")

    def __post_init__(self) -> None:
        if self.padding_side not in (None, *PADDING_SIDES):
            raise OptionsError(f"padding_side must be left or right, got {self.padding_side!r}")
        if self.bos not in (None, *BOS_POLICIES):
            raise OptionsError(f"bos must be one of {', '.join(BOS_POLICIES)}, got {self.bos!r}")


@dataclass(frozen=True)
class ClassifierOptions(DecoderOptions):
    label: int | str | None = option(None, help=_LABEL_HELP, panel=INPUT, cli_type=str)  # which logit is the score
    all_labels: bool = option(
        False, help="Classifier heads with several labels: one output column per label (logit_NAME or prob_NAME).",
        panel=OUTPUTS)
    probabilities: bool = option(
        False, help="Classifier heads: softmax probabilities (sigmoid for one label) instead of logits.", panel=OUTPUTS)
    score_token: ScoreToken | None = option(
        None, help="Decoder sequence classifiers: the token whose logit is the score. last-non-pad (default): the "
        "last token that is not the config's pad token, where the model's own forward, TRL and RewardBench read it "
        "(with pad == EOS, the token before a closing EOS). last-token: the last token of the input (OpenRLHF's "
        "convention).", panel=INPUT, show_default=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.score_token not in (None, *SCORE_TOKENS):
            raise OptionsError(f"score_token must be one of {', '.join(SCORE_TOKENS)}, got {self.score_token!r}")


@dataclass(frozen=True)
class PairOptions(ForwardOptions):
    label: int | str | None = option(None, help=_LABEL_HELP, panel=INPUT, cli_type=str)
    alpha: float | None = option(
        None, help="Pair-input models: reward multiplier, passed as forward(alpha=...) when the model takes it, else "
        "multiplies the score.", panel=INPUT)
    token_type_ids: bool | None = option(
        None, flag="--token-type-ids/--no-token-type-ids", help="Pair-input models: pass token_type_ids (default: "
        "when tokenizer and model use them).", panel=INPUT, show_default=False)


@dataclass(frozen=True)
class MultiObjectiveOptions(DecoderOptions):
    objectives: bool = option(
        False, help="Multi-objective models (ArmoRM style): one column per objective, named from the config or "
        "quirks table, else objective_N.", panel=OUTPUTS)
    gating: bool = option(False, help="Multi-objective models: add the gating weights as gating_NAME columns.",
                          panel=OUTPUTS)
    objective_names: tuple[str, ...] | list[str] | None = api_only(None, why="a quirks-table setting")


@dataclass(frozen=True)
class RewardTokenOptions(DecoderOptions):
    reward_token_id: int | None = option(
        None, help="Reward-token models (InternLM2 style): the token id appended to read the score at (default: "
        "from the model or quirks table).", panel=INPUT)  # None: from the model, its config or the quirks table


# Every family's options class, in the order their flags are listed.
FAMILY_OPTIONS: tuple[type[FamilyOptions], ...] = (
    DecoderOptions, ClassifierOptions, PairOptions, MultiObjectiveOptions, RewardTokenOptions,
)


def family_fields() -> dict[str, dataclasses.Field]:
    """Every family option field by name, once (`label` is both a classifier's and a pair model's)."""
    found: dict[str, dataclasses.Field] = {}
    for cls in FAMILY_OPTIONS:
        for f in dataclasses.fields(cls):
            found.setdefault(f.name, f)
    return found


def family_option_kinds() -> dict[str, list[str]]:
    """Every family option name -> the kinds that take it."""
    from .adapters import ADAPTERS

    kinds: dict[str, list[str]] = {}
    for adapter in ADAPTERS:
        for f in dataclasses.fields(adapter.Options):
            kinds.setdefault(f.name, []).append(adapter.kind)
    return kinds


def given_family_options(family: FamilyOptions | Mapping[str, Any] | None) -> dict[str, Any]:
    """The family options a caller set: a mapping's non-empty values, or an options object's non-default fields."""
    if family is None:
        return {}
    if isinstance(family, FamilyOptions):
        return {f.name: getattr(family, f.name) for f in dataclasses.fields(family)
                if getattr(family, f.name) != field_default(f)}
    defaults = {name: field_default(f) for name, f in family_fields().items()}
    return {name: value for name, value in family.items() if value != defaults.get(name)}


def resolve_family_options(
    adapter: type[Adapter], family: FamilyOptions | Mapping[str, Any] | None, quirk: Mapping[str, Any], why: str = ""
) -> FamilyOptions:
    """The adapter's options: the quirks table's values, overridden by what the caller set. A set option the
    family does not take is an OptionsError naming the families that take it."""
    from .spec import flag

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
