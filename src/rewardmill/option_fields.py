"""Option fields that declare their own command-line flag.

An option group is a dataclass; each field made with `option(...)` carries, in its metadata, the flag's name, help
text, help panel, its fixed choices and how the flag's string is parsed into the field's value. The CLI generates
its parameters from these fields (`rewardmill.cli.flags`), so a new option is one field. A field made with
`api_only(...)` has no flag, and says why. This module imports nothing heavy: `rewardmill --help` reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Help panels of `--help`.
LOAD = "Model loading"
INPUT = "Input handling"
ENGINE = "Batching"
COLUMNS = "Column names"
OUTPUTS = "Extra outputs"
JUDGE = "Judge"
RAY = "Scale out on Ray"

_KEY = "rewardmill.flag"
# A flag whose default is its field's.
FIELD_DEFAULT: Any = type("FieldDefault", (), {"__repr__": lambda self: "FIELD_DEFAULT"})()
_API_ONLY = "rewardmill.api_only"


@dataclass(frozen=True)
class Flag:
    """How one option field appears on the command line.

    `decls`: the flag's names (e.g. ("--model", "-m"), or ("--packing/--no-packing",)); `choices`: its fixed values,
    shown in `--help` and checked by the CLI unless `checked_later` (then the API checks them, with its own message);
    `cli_type`: the type the CLI reads when it is not the field's (e.g. str for a JSON flag), parsed by `parse`;
    `cli_default`: the flag's default when it is not the field's."""

    decls: tuple[str, ...]
    help: str
    panel: str | None = None
    choices: tuple[str, ...] | None = None
    checked_later: bool = False
    parse: Callable[[Any], Any] | None = None
    cli_type: Any = None
    cli_default: Any = FIELD_DEFAULT
    show_default: bool = True

    @property
    def name(self) -> str:
        """The flag as error messages name it: --token-type-ids/--no-token-type-ids stays whole."""
        return self.decls[0]

    @property
    def parameter(self) -> str:
        """The Python parameter name the CLI gives the flag (--cpu-kernel -> cpu_kernel)."""
        return self.decls[0].split("/")[0].lstrip("-").replace("-", "_")


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | tuple[str, ...] | None = None,
           panel: str | None = None, choices: tuple[str, ...] | None = None, checked_later: bool = False,
           parse: Callable[[Any], Any] | None = None, cli_type: Any = None, cli_default: Any = FIELD_DEFAULT,
           show_default: bool = True, default_factory: Any = dataclasses.MISSING, repr: bool = True) -> Any:
    """A dataclass field with its flag (default name: --FIELD-NAME)."""
    decls = (flag,) if isinstance(flag, str) else flag
    metadata = {_KEY: Flag(decls or (), help, panel, choices, checked_later, parse, cli_type, cli_default,
                           show_default)}
    return dataclasses.field(default=default, default_factory=default_factory, repr=repr, metadata=metadata)


def api_only(default: Any = dataclasses.MISSING, *, why: str, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with no flag; `why` says why (e.g. set by a resumed run, not by hand)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_API_ONLY: why})


def flag_like(cls: type, name: str) -> Any:
    """A field with the same flag and default as `cls`'s field `name` (a judge's --device is a model's --device)."""
    source = cls.__dataclass_fields__[name]
    return dataclasses.field(default=field_default(source), metadata=source.metadata)


def flag_of(field: dataclasses.Field) -> Flag | None:
    """The field's flag, its decls filled in from the field's name; None for an API-only field."""
    declared = field.metadata.get(_KEY)
    if declared is None:
        return None
    if declared.decls:
        return declared
    return dataclasses.replace(declared, decls=("--" + field.name.replace("_", "-"),))


def is_api_only(field: dataclasses.Field) -> bool:
    return _API_ONLY in field.metadata


def field_default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
