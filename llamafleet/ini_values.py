"""The values of an INI inventory, typed as Ansible types them: Python literals, then llamafleet's declared types.

Ansible's ini plugin reads a value, on a host line or in a `:vars` section alike, as the Python literal it spells
when it spells one (`1`, `True`, `[1, 2]`, `'x'`), else as the text: `a=1` is 1, `b=yes` the string "yes"
(ansible-core 2.19 types `:vars` values too, whatever its documentation says). Tuples and sets become lists, bytes
text, complex numbers and `...` the text they were.

Ansible converts a value again when an option reads it: a bool option takes "yes", an int option "22", a string
option 1234. llamafleet's typed variables get that conversion here, when the file is read, so `ansible_become=yes`,
`metrics=true` or `ansible_password=1234` mean in llamafleet what they mean in Ansible (ansible-inventory lists
them as written).
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from typing import Any

from . import variables

MAX_INT_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 4300)() or 4300  # what Python converts to text

_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*")
# Ansible's boolean(): what a bool option takes as true or false
_TRUE = {"y", "yes", "on", "1", "true", "t"}
_FALSE = {"n", "no", "off", "0", "false", "f"}
_STRING_TYPES = {"str", "path", "address", "login_name", "username", "url_template"}
_INT_TYPES = {"int", "port", "positive_int"}


def read(name: str, text: str) -> Any:
    """The value of variable `name` written as `text`; ValueError saying why when Ansible could not read it either."""
    return _typed(name, _literal(text))


def _literal(text: str) -> Any:
    """`text` as Ansible's ini plugin reads a value: the Python literal it spells, else the text itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in '\d' and the like
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    except (RecursionError, MemoryError):
        raise ValueError("the value is nested too deeply to read") from None
    except Exception as exc:  # {[1]: 2}: an unhashable key; Ansible refuses these too
        raise ValueError(f"cannot read the value as a Python literal ({exc})") from None
    return _plain(value)


def _plain(value: Any) -> Any:
    """A literal's value as inventory data: tuples and sets become lists, bytes text, complex numbers and ... text."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):  # 0x... has no length limit: refuse what Python, and so JSON, cannot print
        try:
            str(value)
        except ValueError:
            raise ValueError(f"an integer with more than {MAX_INT_DIGITS} digits") from None
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise ValueError(f"a mapping key must be a plain value, not {type(key).__name__}")
        return {key: _plain(item) for key, item in value.items()}
    return "..." if value is Ellipsis else str(value)  # complex


def _typed(name: str, value: Any) -> Any:
    """`value` converted to the declared type of llamafleet variable `name`, as Ansible converts an option's value.

    Only conversions Ansible makes and that cannot be meant otherwise: "yes"/"no"/"true"/... and 0/1 for a bool,
    a number written as text for an int, a number for a string. Anything else is left for the type check to refuse.
    """
    kind = variables.REFINED_TYPES.get(name) or variables.CONNECTION_VARS.get(name)
    if kind is None and name in variables.catalogue():
        kind = variables.catalogue()[name].type
    if kind == "bool":
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if type(value) in (int, float) and value in (0, 1):
            return bool(value)
    elif kind in _INT_TYPES:
        if isinstance(value, str) and _INTEGER.fullmatch(value) and len(value) <= MAX_INT_DIGITS:
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind in _STRING_TYPES and isinstance(value, (int, float)):
        return str(value)
    return value
