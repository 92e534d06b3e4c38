"""A role's typed settings: a frozen dataclass whose fields are read from one host's variables.

The inventory has already given every variable its default (from the role's defaults.yml, the only
place a default is written) and checked it against its declared type (variables.check_value). A field
adds only what that type cannot say, through its reader: a minimum, a pattern, one line a unit file can
carry. A variable whose default is null may be null, and its field is then None without asking the
reader. Rules across fields stay in the role's settings module, written by hand.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import InventoryError
from .variables import Variable, catalogue
from .yamlfile import shorten

if TYPE_CHECKING:
    from .inventory import Host

T = TypeVar("T")
# A field's reader: the value as the inventory resolved it -> the field's value; Refused says why not.
Reader = Callable[[Any, Variable], Any]


class Refused(ValueError):
    """Why a value cannot be used; build() adds the file, host and key to the message."""


def knob(reader: Reader | None = None, *, variable: str | None = None) -> Any:
    """A settings field read from `variable` (default: the field's own name) through `reader` (default: as_typed)."""
    return dataclasses.field(metadata={"variable": variable, "reader": reader or as_typed})


def build(cls: type[T], host: Host, file: str | None = None, where: str | None = None) -> T:
    """`cls` with every other field, each a knob, read from the host's variables; a field `host` gets its name.

    A value a reader refuses is an InventoryError naming `file`, `where` (default: "host NAME") and the variable.
    """
    values = {}
    for field in dataclasses.fields(cls):
        if field.name == "host":
            values["host"] = host.name
            continue
        name = field.metadata["variable"] or field.name
        try:
            values[field.name] = _read(field.metadata["reader"], catalogue()[name], host.vars[name])
        except Refused as exc:
            raise InventoryError(str(exc), file=file, where=where or f"host {host.name}", key=name) from None
    return cls(**values)


def _read(reader: Reader, variable: Variable, value: Any) -> Any:
    return None if value is None and _may_be_null(variable) else reader(value, variable)


def _may_be_null(variable: Variable) -> bool:
    """A variable whose default is null, unless it is required, may be left null: the role does without it."""
    return variable.default is None and not variable.required


# -- readers: each refuses only what the variable's type lets through (null, a value out of range) -------


def as_typed(value: Any, variable: Variable) -> Any:
    """The value as the inventory checked it (a list becomes a tuple); null is refused where the default is not."""
    if value is None:
        raise Refused(f"must not be null (leave it out for the default, {shorten(repr(variable.default))})")
    return tuple(value) if isinstance(value, list) else value


def whole(minimum: int) -> Reader:
    """An integer (so the type says) of at least `minimum`."""

    def read(value: Any, variable: Variable) -> int:
        if value is None or value < minimum:
            raise Refused(f"{shorten(repr(value))} is not a whole number >= {minimum}")
        return value

    return read


def flag(value: Any, variable: Variable) -> bool:
    """true or false (so the type says), not null."""
    if value is None:
        raise Refused(f"{value!r} is not true or false")
    return value


def choice(value: Any, variable: Variable) -> str:
    """One of the choices defaults.yml lists (so the type says), not null."""
    if value is None:
        raise Refused(f"{value!r} is not one of {', '.join(map(str, variable.choices))}")
    return value


def line(pattern: re.Pattern | None = None) -> Reader:
    """A string (so the type says) a unit file can carry: not empty, no control characters; matching `pattern`."""

    def read(value: Any, variable: Variable) -> str:
        if value is None or not printable(value):
            raise Refused(f"{shorten(repr(value))} is not a non-empty single-line string")
        if pattern is not None and not pattern.fullmatch(value):
            raise Refused(f"{shorten(repr(value))} does not match {pattern.pattern}")
        return value

    return read


def words(pattern: re.Pattern | None = None, numbers: bool = False) -> Reader:
    """A list (so the type says; null is empty) of single-line strings, and numbers when `numbers`, each matching
    `pattern` when given."""

    def read(value: Any, variable: Variable) -> tuple[str, ...]:
        return tuple(_word(item, pattern, numbers) for item in value or [])

    return read


def _word(item: Any, pattern: re.Pattern | None, numbers: bool) -> str:
    kinds = (str, int, float) if numbers else (str,)
    word = item if isinstance(item, str) else repr(item)
    if isinstance(item, bool) or not isinstance(item, kinds) or not printable(word):
        raise Refused(f"item {shorten(repr(item))} is not a single-line string")
    if pattern is not None and not pattern.fullmatch(word):
        raise Refused(f"item {shorten(word)!r} does not match {pattern.pattern}")
    return word


def printable(text: str) -> bool:
    """Non-empty, and no control characters (a unit file's line would end at a newline)."""
    return bool(text) and not any(ord(c) < 32 or ord(c) == 127 for c in text)
