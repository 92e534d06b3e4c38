"""The catalogue of llamafleet's inventory variables, read from every role's defaults.yml."""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .errors import InventoryError

ROLES_DIR = Path(__file__).resolve().parent.parent / "roles"

# Ansible's connection variables that llamafleet honours, with their types.
CONNECTION_VARS: dict[str, str] = {
    "ansible_host": "str",
    "ansible_port": "int",
    "ansible_user": "str",
    "ansible_ssh_private_key_file": "path",
    "ansible_become": "bool",
    "ansible_become_user": "str",
    "ansible_become_password": "str",
    "ansible_password": "str",
    "ansible_connection": "str",
    "ansible_group_priority": "int",
    "ansible_python_interpreter": "str",
}

# Prefixes that mark a variable as llamafleet's: an unknown name with one of them is a typo.
OWN_PREFIXES = ("llama_cpp_", "rpc_", "api_", "llamafleet_")
SECRET_VARS = frozenset({"ansible_become_password", "ansible_password"})


@dataclass(frozen=True)
class Variable:
    """One documented knob of a role."""

    name: str
    role: str
    type: str
    default: Any
    doc: str
    choices: tuple | None = None
    required: bool = False


@lru_cache(maxsize=4)
def catalogue(roles_dir: Path = ROLES_DIR) -> dict[str, Variable]:
    """Every variable declared in roles/*/defaults.yml, keyed by name."""
    found: dict[str, Variable] = {}
    for path in sorted(roles_dir.glob("*/defaults.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        for name, spec in data.items():
            if name in found:
                raise InventoryError("declared twice", file=str(path), key=name)
            found[name] = Variable(
                name=name,
                role=path.parent.name,
                type=spec.get("type", "str"),
                default=spec.get("default"),
                doc=" ".join(str(spec.get("doc", "")).split()),
                choices=tuple(spec["choices"]) if spec.get("choices") else None,
                required=bool(spec.get("required", False)),
            )
    return found


def defaults() -> dict[str, Any]:
    """The default value of every llamafleet variable (None where there is none)."""
    return {name: var.default for name, var in catalogue().items()}


def suggestion(name: str) -> str | None:
    """The known variable a misspelt name most likely meant."""
    known = list(catalogue()) + list(CONNECTION_VARS)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return close[0] if close else None


def check_name(name: str) -> str | None:
    """Why `name` is not acceptable as a variable, or None when it is."""
    if name in catalogue() or name in CONNECTION_VARS:
        return None
    hint = suggestion(name)
    if hint:
        return f"unknown variable (did you mean '{hint}'?)"
    if name.startswith(OWN_PREFIXES):
        return "unknown llamafleet variable (see the roles' defaults.yml for the list)"
    return None


def check_value(name: str, value: Any) -> str | None:
    """Why `value` does not fit the declared type of `name`, or None when it does."""
    if value is None:
        return None
    kind = CONNECTION_VARS.get(name) or catalogue()[name].type
    var = catalogue().get(name)
    checker = _CHECKERS.get(kind)
    if checker is None:
        raise InventoryError(f"unknown type '{kind}' in a defaults.yml", key=name)
    problem = checker(value)
    if problem is None and kind == "enum" and var and value not in var.choices:
        problem = f"must be one of {', '.join(map(str, var.choices))}, not {value!r}"
    return problem


def _is_str(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, not {_kind(value)}"


def _is_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else f"must be an integer, not {_kind(value)}"


def _is_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {_kind(value)}"


def _is_list(value: Any) -> str | None:
    return None if isinstance(value, list) else f"must be a list, not {_kind(value)}"


def _is_dict(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a mapping, not {_kind(value)}"


def _is_enum(value: Any) -> str | None:
    return None if isinstance(value, (str, int, bool)) else f"must be a single value, not {_kind(value)}"


def _is_cidr_list(value: Any) -> str | None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            return f"{item!r} is not an address or CIDR network"
    return None


def _is_port(value: Any) -> str | None:
    problem = _is_int(value)
    if problem is None and not 1 <= value <= 65535:
        problem = f"must be a port number 1-65535, not {value}"
    return problem


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}
    return names.get(type(value), type(value).__name__)


_CHECKERS = {
    "str": _is_str,
    "path": _is_str,
    "int": _is_int,
    "port": _is_port,
    "bool": _is_bool,
    "list": _is_list,
    "dict": _is_dict,
    "enum": _is_enum,
    "cidr_list": _is_cidr_list,
}
