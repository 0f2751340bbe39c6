"""Typer parameters generated from option fields, and option objects built back from the parsed flags.

An option group (a dataclass whose fields are made with `option_fields.option`) becomes keyword-only parameters
of a command (`with_flags`); the command receives them in `**flags` and builds the group with `build`. Nested
groups are walked (a `ModelSpec` holds LoadOptions, TextOptions, ... and the family options of every family).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Annotated, Any, Literal, Optional

import typer

from ..option_fields import FIELD_DEFAULT, Flag, field_default, flag_of
from ..reward_models.family_options import family_fields
from ..reward_models.spec import ModelSpec


@functools.cache
def choice_type(values: tuple[str, ...]) -> type[Enum]:
    """An Enum of `values`, so that typer shows them (<a|b|c>) and refuses others."""
    return Enum("Choice", {value: value for value in values}, type=str)  # type: ignore[return-value]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _without_none(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(arg for arg in typing.get_args(hint) if arg is not type(None))
    return (hint,)


def _choices(cls: type, field: dataclasses.Field, flag: Flag) -> tuple[str, ...] | None:
    if flag.choices is not None:
        return flag.choices
    kinds = _without_none(_hints(cls)[field.name])
    if len(kinds) == 1 and typing.get_origin(kinds[0]) is Literal:
        return typing.get_args(kinds[0])
    return None


def _cli_type(cls: type, field: dataclasses.Field, flag: Flag) -> Any:
    if flag.cli_type is not None:
        return flag.cli_type
    kinds = _without_none(_hints(cls)[field.name])
    if len(kinds) != 1:
        raise TypeError(f"{cls.__name__}.{field.name} takes {kinds}: give its flag a cli_type (and a parse)")
    return kinds[0]


def _default(field: dataclasses.Field, flag: Flag) -> Any:
    return field_default(field) if flag.cli_default is FIELD_DEFAULT else flag.cli_default


def parameter(cls: type, field: dataclasses.Field, flag: Flag) -> inspect.Parameter:
    """The keyword-only parameter that declares the field's flag to typer."""
    choices = _choices(cls, field, flag)
    default = _default(field, flag)
    metavar = None
    if choices is not None and not flag.checked_later:
        kind: Any = choice_type(choices)
        if default is not None and default is not dataclasses.MISSING:
            default = kind(default)
    else:
        kind = _cli_type(cls, field, flag)
        if choices is not None:
            metavar = f"<{'|'.join(choices)}>"
    if default is None:
        kind = Optional[kind]
    declared = typer.Option(*flag.decls, help=flag.help, rich_help_panel=flag.panel, show_default=flag.show_default,
                            metavar=metavar)
    empty = inspect.Parameter.empty
    return inspect.Parameter(flag.parameter, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, declared],
                             default=empty if default is dataclasses.MISSING else default)


def _is_group(field: dataclasses.Field) -> bool:
    return dataclasses.is_dataclass(field.default_factory)


def walk(cls: type) -> Iterator[tuple[type, dataclasses.Field, Flag]]:
    """(declaring class, field, flag) of every flagged field of `cls`, nested groups and a spec's family included."""
    for field in dataclasses.fields(cls):
        flag = flag_of(field)
        if flag is not None:
            yield cls, field, flag
        elif _is_group(field):
            yield from walk(field.default_factory)  # type: ignore[arg-type]
        elif cls is ModelSpec and field.name == "family":
            for family_field in family_fields().values():
                family_flag = flag_of(family_field)
                if family_flag is not None:
                    yield _owner(family_field), family_field, family_flag


def _owner(field: dataclasses.Field) -> type:
    from ..reward_models.family_options import FAMILY_OPTIONS

    return next(cls for cls in FAMILY_OPTIONS if field in dataclasses.fields(cls))


def parameters(cls: type) -> list[inspect.Parameter]:
    return [parameter(owner, field, flag) for owner, field, flag in walk(cls)]


def flag_names(cls: type) -> list[str]:
    """The parameter names of the flags `cls` declares."""
    return [flag.parameter for _, _, flag in walk(cls)]


def with_flags(*groups: type, after: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the flags of `groups` besides its own, listed after its parameter `after` (default: last);
    it receives them in `**flags`, for `build`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        at = len(own) if after is None else [p.name for p in own].index(after) + 1
        generated = [p for group in groups for p in parameters(group)]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            return command(**kwargs)

        del run.__wrapped__  # typer must read the signature below, not the command's own
        later = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[at:]]
        signature = inspect.Signature(own[:at] + generated + later, return_annotation=None)
        run.__signature__ = signature  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return run

    return decorate


def value(flags: dict[str, Any], flag: Flag) -> Any:
    """A flag's value as the option field takes it: the choice's string, parsed where the flag says how."""
    given = flags[flag.parameter]
    if isinstance(given, Enum):
        given = given.value
    return flag.parse(given) if flag.parse is not None else given


def build(cls: type, flags: dict[str, Any], **fields: Any) -> Any:
    """`cls` (an option group or spec) from parsed flags; `fields` give those without a flag (e.g. the model)."""
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        flag = flag_of(field)
        if field.name in fields:
            kwargs[field.name] = fields[field.name]
        elif flag is not None:
            if flag.parameter in flags:
                kwargs[field.name] = value(flags, flag)
        elif _is_group(field):
            kwargs[field.name] = build(field.default_factory, flags)  # type: ignore[arg-type]
        elif cls is ModelSpec and field.name == "family":
            kwargs[field.name] = {name: value(flags, family_flag) for name, f in family_fields().items()
                                  if (family_flag := flag_of(f)) is not None}
    return cls(**kwargs)


def model_spec(model: str, flags: dict[str, Any]) -> ModelSpec:
    """The spec of `model` with the model flags a command received."""
    return build(ModelSpec, flags, model=model)


with_model_flags = with_flags(ModelSpec)
