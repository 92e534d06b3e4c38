"""The catalogue of llamafleet's inventory variables, read from every role's defaults.yml."""

from __future__ import annotations

import difflib
import ipaddress
import re
import string
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import yamlfile
from .errors import InventoryError
from .yamlfile import shorten

# The checkout's roles/ (linked from llamafleet/data/), or the installed package's copy of it.
ROLES_DIR = (Path(__file__).parent / "data" / "roles").resolve()

# Ansible's connection variables, with their types: connvars.read() says which llamafleet honours (older
# spellings included), warns about or refuses. "enum" without choices is any single value: Ansible reads
# these as strings or booleans, and llamafleet only warns that it ignores them.
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
    "ansible_ssh_host": "str",
    "ansible_ssh_port": "int",
    "ansible_ssh_user": "str",
    "ansible_ssh_pass": "str",
    "ansible_ssh_password": "str",
    "ansible_become_pass": "str",
    "ansible_sudo_pass": "str",
    "ansible_private_key_file": "path",
    "ansible_ssh_args": "str",
    "ansible_ssh_common_args": "str",
    "ansible_ssh_extra_args": "str",
    "ansible_become_method": "str",
    "ansible_host_key_checking": "enum",
    "ansible_ssh_host_key_checking": "enum",
    "ansible_become_exe": "enum",
    "ansible_become_flags": "enum",
    "ansible_sudo": "enum",
    "ansible_sudo_user": "enum",
    "ansible_sudo_exe": "enum",
    "ansible_sudo_flags": "enum",
    "ansible_su": "enum",
    "ansible_su_user": "enum",
    "ansible_su_pass": "enum",
    "ansible_shell_type": "enum",
    "ansible_shell_executable": "enum",
    "ansible_ssh_executable": "enum",
    "ansible_ssh_pipelining": "enum",
    "ansible_pipelining": "enum",
    "ansible_sftp_extra_args": "enum",
    "ansible_scp_extra_args": "enum",
    "ansible_ssh_transfer_method": "enum",
    "ansible_scp_if_ssh": "enum",
    "ansible_sftp_batch_mode": "enum",
    "ansible_ssh_timeout": "enum",
    "ansible_timeout": "enum",
    "ansible_ssh_retries": "enum",
    "ansible_control_path": "enum",
    "ansible_control_path_dir": "enum",
    "ansible_ssh_use_tty": "enum",
}

# Stricter types than CONNECTION_VARS gives for values that end up on an SSH, sudo or useradd command line,
# and for the URL templates of the llama_cpp role.
REFINED_TYPES: dict[str, str] = {
    "ansible_host": "address",
    "ansible_port": "port",
    "ansible_user": "login_name",
    "ansible_become_user": "login_name",
}

# Prefixes that mark a variable as llamafleet's: an unknown name with one of them is a typo.
OWN_PREFIXES = ("llama_cpp_", "rpc_", "api_", "llamafleet_", "balancer_")

# Variables whose values are never shown (`invoke inventory`, --json): the single list, used through redact().
# Ansible's older spellings are here too, so that they are hidden even though llamafleet does not read them.
SECRET_VARS = frozenset(
    {
        "ansible_become_password",
        "ansible_password",
        "ansible_become_pass",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_sudo_pass",
        "ansible_sudo_password",
        "ansible_su_pass",
    }
)
SECRET_SHOWN = "(secret)"  # noqa: S105 - what is shown instead of a secret, not one

# Ansible's rule for variable names (and Python's for identifiers, in ASCII).
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A host name, a DNS name or an address: no path separators, spaces, control characters, '@', ':' or leading '-'.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Ansible's group names are letters, digits and _; it warns about '-' but keeps it, so llamafleet does too.
GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_NAME_LENGTH = 253
_PLAIN_RULE = "letters, digits, '_', '.' and '-', not starting with '.' or '-', no '..'"
# what -> (pattern, what messages call it, the rule in words)
NAME_RULES = {
    "host": (PLAIN_NAME, "host name", _PLAIN_RULE + "; or an IP address"),
    "address": (PLAIN_NAME, "host name", _PLAIN_RULE),
    "group": (GROUP_NAME, "group name", "letters, digits, '_' and '-', not starting with '-'"),
}
# POSIX portable user names as useradd takes them (llamafleet_user), at most 32 characters.
USERNAME = re.compile(r"[a-z_][a-z0-9_-]*\$?")
# Existing accounts we log in as or become (ansible_user, ansible_become_user): also capitals and dots.
LOGIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_USERNAME_LENGTH = 32
# Debian and RPM package names (letters, digits, + - . _), not starting with '-': never read as an option.
PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
MAX_PACKAGE_NAME_LENGTH = 128
URL_PLACEHOLDERS = ("version",)


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
        data = yamlfile.load_own(path) or {}
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


def suggestion(name: str, cutoff: float = 0.75) -> str | None:
    """The known variable a misspelt name most likely meant."""
    known = list(catalogue()) + list(CONNECTION_VARS)
    close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    return close[0] if close else None


def check_name(name: str) -> str | None:
    """Why `name` is not acceptable as a variable, or None when it is."""
    if name in catalogue() or name in CONNECTION_VARS:
        return None
    # Other ansible_* names are Ansible's own (interpreters, network options): connvars warns about
    # them; only a near-certain misspelling of one llamafleet reads is refused here.
    hint = suggestion(name, cutoff=0.9 if name.startswith("ansible_") else 0.75)
    if hint:
        return f"unknown variable (did you mean '{hint}'?)"
    if name.startswith(OWN_PREFIXES):
        return "unknown llamafleet variable (see the roles' defaults.yml for the list)"
    return None


def redact(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of `values` with the value of every secret variable that is set replaced by "(secret)"."""
    return {k: SECRET_SHOWN if k in SECRET_VARS and v is not None else v for k, v in values.items()}


def check_variable_name(name: Any) -> str | None:
    """Why `name` cannot be a variable name at all (not a string, not an identifier), or None."""
    if not isinstance(name, str):
        return f"a variable name must be a string, not {kind_of(name)}"
    if not VARIABLE_NAME.fullmatch(name):
        return "not a valid variable name (letters, digits and _, not starting with a digit)"
    return None


def name_problem(name: str, what: str) -> str | None:
    """Why `name` is not a valid name for `what` ("host", "group" or "address"), or None when it is."""
    pattern, called, rule = NAME_RULES[what]
    if what != "group" and _is_ip_address(name):
        return None
    if not name:
        return f"a {called} must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"a {called} must be at most {MAX_NAME_LENGTH} characters"
    if pattern.fullmatch(name) and ".." not in name:
        return None
    if what != "group" and ":" in name and pattern.fullmatch(name.replace(":", "")):
        return f"{shorten(name)!r} looks like host:port; set the port in ansible_port"
    if what != "group" and "@" in name:
        return f"{shorten(name)!r} looks like user@host; set the user in ansible_user"
    return f"{shorten(name)!r} is not a valid {called} ({rule})"


def check_value(name: str, value: Any) -> str | None:
    """Why `value` does not fit the declared type of `name`, or None when it does."""
    if value is None:
        return None
    kind = REFINED_TYPES.get(name) or CONNECTION_VARS.get(name) or catalogue()[name].type
    var = catalogue().get(name)
    checker = _CHECKERS.get(kind)
    if checker is None:
        raise InventoryError(f"unknown type '{kind}' in a defaults.yml", key=name)
    problem = checker(value)
    if problem is None and kind == "enum" and var and value not in var.choices:
        problem = f"must be one of {', '.join(map(str, var.choices))}, not {value!r}"
    return problem


def _is_str(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, not {kind_of(value)}"


def _is_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else f"must be an integer, not {kind_of(value)}"


def _is_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {kind_of(value)}"


def _is_list(value: Any) -> str | None:
    return None if isinstance(value, list) else f"must be a list, not {kind_of(value)}"


def _is_dict(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a mapping, not {kind_of(value)}"


def _is_enum(value: Any) -> str | None:
    return None if isinstance(value, (str, int, bool)) else f"must be a single value, not {kind_of(value)}"


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


def _is_positive_int(value: Any) -> str | None:
    problem = _is_int(value)
    if problem is None and value < 1:
        problem = f"must be at least 1, not {value}"
    return problem


def _is_address(value: Any) -> str | None:
    problem = _is_str(value)
    if problem is None:
        problem = name_problem(value, "address")
        if problem:
            problem = f"must be a host name or IP address: {problem}"
    return problem


def _is_name(value: Any) -> str | None:
    problem = _is_str(value)
    if problem is None and name_problem(value, "group"):
        problem = f"{shorten(value)!r} is not a valid name (letters, digits, '_' and '-', not starting with '-')"
    return problem


def _is_username(value: Any) -> str | None:
    return _user_problem(value, USERNAME, "a POSIX user name: a-z, 0-9, '_' and '-', starting with a letter or '_'")


def _is_login_name(value: Any) -> str | None:
    return _user_problem(value, LOGIN_NAME, "a user name: letters, digits, '_', '.' and '-', not starting with '.'/'-'")


def _user_problem(value: Any, pattern: re.Pattern, rule: str) -> str | None:
    problem = _is_str(value)
    if problem is None and (len(value) > MAX_USERNAME_LENGTH or not pattern.fullmatch(value)):
        problem = f"{shorten(value)!r} is not {rule}, at most {MAX_USERNAME_LENGTH} characters"
    return problem


def _is_package_list(value: Any) -> str | None:
    problem = _is_list(value)
    for item in value if problem is None else []:
        if not isinstance(item, str):
            return f"every package must be a string, not {kind_of(item)}"
        if len(item) > MAX_PACKAGE_NAME_LENGTH or not PACKAGE_NAME.fullmatch(item):
            return (
                f"{shorten(item)!r} is not a package name "
                "(letters, digits, '+', '-', '.' and '_', starting with a letter or digit)"
            )
    return problem


def _is_url_template(value: Any) -> str | None:
    problem = _is_str(value)
    if problem is not None:
        return problem
    if not re.match(r"https?://[^/\s]", value, re.IGNORECASE):
        return f"must be an http:// or https:// URL, not {shorten(value)!r}"
    if not value.isprintable() or any(c.isspace() for c in value):
        return f"{shorten(value)!r} contains spaces or control characters"
    problem = _placeholder_problem(value)
    if problem is None:
        try:
            host = urllib.parse.urlsplit(value).hostname
        except ValueError as exc:  # "https://[x/": Invalid IPv6 URL
            return f"{shorten(value)!r} is not a valid URL ({exc})"
        problem = None if host else f"{shorten(value)!r} has no host name"
    return problem


def _placeholder_problem(template: str) -> str | None:
    """Why the {...} fields of `template` are not just the allowed placeholders, or None."""
    allowed = ", ".join(f"{{{p}}}" for p in URL_PLACEHOLDERS)
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError:
        return f"has an unbalanced '{{' or '}}' (the only placeholder allowed is {allowed}; write {{{{ or }}}})"
    for field, spec, conv in fields:
        if field not in URL_PLACEHOLDERS or spec or conv:
            written = "{" + field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            return f"placeholder {shorten(written)!r} is not allowed (the only placeholder allowed is {allowed})"
    return None


def _is_ip_address(text: str) -> bool:
    if not re.fullmatch(r"[0-9A-Fa-f:.]+", text):  # no IPv6 scope (%eth0), which ipaddress would accept
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def kind_of(value: Any) -> str:
    """How a message names the YAML type of `value`: "a string", "an integer", "null"..."""
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (dict, "a mapping"))
    kinds += ((list, "a list"), (type(None), "null"))
    return next((name for cls, name in kinds if isinstance(value, cls)), type(value).__name__)


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
    "positive_int": _is_positive_int,
    "address": _is_address,
    "name": _is_name,
    "username": _is_username,
    "login_name": _is_login_name,
    "package_list": _is_package_list,
    "url_template": _is_url_template,
}
