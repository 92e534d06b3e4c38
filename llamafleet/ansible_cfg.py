"""ansible.cfg, found and read as Ansible finds and reads it, and the ANSIBLE_* variables that beat its keys: the
settings that change what a run reaches, typed; the keys llamafleet does not honour, warned about.

Found as ansible-core finds it, the first that exists: $ANSIBLE_CONFIG (a folder means its ansible.cfg),
./ansible.cfg (not when the current folder is world-writable: then it is ignored with a warning), ~/.ansible.cfg,
/etc/ansible/ansible.cfg. Read with configparser as Ansible reads it (`;` starts an inline comment, values are
raw, surrounding quotes dropped). Relative paths in it are relative to its folder, in environment variables to
the current one; `~` and `$VARS` are expanded.

What is honoured (an environment variable beats the key, a flag beats both, as in Ansible):

- [defaults] inventory (ANSIBLE_INVENTORY): the inventory when neither -i nor LLAMAFLEET_INVENTORY names one.
- [defaults] remote_user, remote_port, private_key_file, timeout (ANSIBLE_REMOTE_USER, ANSIBLE_REMOTE_PORT,
  ANSIBLE_PRIVATE_KEY_FILE, ANSIBLE_TIMEOUT) and [privilege_escalation] become, become_user, become_method
  (ANSIBLE_BECOME...): ansible_user, ansible_port, ansible_ssh_private_key_file, ssh_connect_timeout,
  ansible_become, ansible_become_user, ansible_become_method where the inventory sets none (under any spelling).
- [defaults] forks (ANSIBLE_FORKS): the default of --forks.
- [defaults] vault_password_file, vault_identity_list, vault_identity: vault passwords, as the flags give them
  (their environment variables are vault_secrets' to read).
- [defaults] inventory_ignore_extensions, inventory_ignore_patterns, or [inventory] ignore_extensions,
  ignore_patterns (ANSIBLE_INVENTORY_IGNORE, ANSIBLE_INVENTORY_IGNORE_REGEX): what an inventory folder skips.

Keys that would change what Ansible reaches or does and that llamafleet does not honour (host_key_checking =
False, ask_pass, ssh arguments, ...) get one warning line each; a transport other than ssh is refused.
"""

from __future__ import annotations

import configparser
import decimal
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import variables
from .errors import InventoryError
from .inventory_sources import IGNORED_EXTENSIONS, Ignored
from .yamlfile import printable, shorten

MAX_CONFIG_BYTES = 1024 * 1024
TRUE_WORDS = ("y", "yes", "on", "1", "true", "t")  # Ansible's non-strict boolean: anything else is false
SUDO = ("sudo", "ansible.builtin.sudo")
SSH_TRANSPORTS = ("ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh")


class ConfigError(InventoryError):
    """ansible.cfg (or an ANSIBLE_* variable that stands for one of its keys) holds what llamafleet cannot use."""


@dataclass(frozen=True)
class _Key:
    """Where a setting is read: its environment variable first, then each (section, key) of ansible.cfg."""

    env: str | None
    entries: tuple[tuple[str, str], ...]


KEYS = {
    "inventory": _Key("ANSIBLE_INVENTORY", (("defaults", "inventory"),)),
    "remote_user": _Key("ANSIBLE_REMOTE_USER", (("defaults", "remote_user"),)),
    "remote_port": _Key("ANSIBLE_REMOTE_PORT", (("defaults", "remote_port"),)),
    "private_key_file": _Key("ANSIBLE_PRIVATE_KEY_FILE", (("defaults", "private_key_file"),)),
    "timeout": _Key("ANSIBLE_TIMEOUT", (("defaults", "timeout"),)),
    "forks": _Key("ANSIBLE_FORKS", (("defaults", "forks"),)),
    "become": _Key("ANSIBLE_BECOME", (("privilege_escalation", "become"),)),
    "become_user": _Key("ANSIBLE_BECOME_USER", (("privilege_escalation", "become_user"),)),
    "become_method": _Key("ANSIBLE_BECOME_METHOD", (("privilege_escalation", "become_method"),)),
    # The environment's values of these three are vault_secrets' to read; only the file's are read here.
    "vault_password_file": _Key(None, (("defaults", "vault_password_file"),)),
    "vault_identity_list": _Key(None, (("defaults", "vault_identity_list"),)),
    "vault_identity": _Key(None, (("defaults", "vault_identity"),)),
    "ignore_extensions": _Key(
        "ANSIBLE_INVENTORY_IGNORE", (("defaults", "inventory_ignore_extensions"), ("inventory", "ignore_extensions"))
    ),
    "ignore_patterns": _Key(
        "ANSIBLE_INVENTORY_IGNORE_REGEX", (("defaults", "inventory_ignore_patterns"), ("inventory", "ignore_patterns"))
    ),
    "transport": _Key("ANSIBLE_TRANSPORT", (("defaults", "transport"),)),
}
# ansible.cfg settings -> the variable they stand for where the inventory sets it under none of its spellings.
FALLBACKS = {
    "remote_user": "ansible_user",
    "remote_port": "ansible_port",
    "private_key_file": "ansible_ssh_private_key_file",
    "timeout": "ssh_connect_timeout",
    "become": "ansible_become",
    "become_user": "ansible_become_user",
    "become_method": "ansible_become_method",
}
_KEY_CHECKS = "llamafleet always checks host keys (--accept-new-host-keys records those of new hosts)"
_NO_PROMPT = "llamafleet asks for no login or sudo password: set ansible_password / ansible_become_password (vaulted)"
_SSH_ARGS = (
    "llamafleet reads ssh arguments (ProxyJump, UserKnownHostsFile) from the inventory's ansible_ssh_common_args"
)
_SUDO_FIXED = "llamafleet runs sudo from the PATH as 'sudo -H -S|-n -u USER'"
# Keys that would change what a run reaches or does, which llamafleet does not honour: (env, section, key, when, why).
# `when` is "false" or "true" (warned only for that boolean value) or "set".
WARNED = (
    ("ANSIBLE_HOST_KEY_CHECKING", "defaults", "host_key_checking", "false", _KEY_CHECKS),
    ("ANSIBLE_ASK_PASS", "defaults", "ask_pass", "true", _NO_PROMPT),
    ("ANSIBLE_BECOME_ASK_PASS", "privilege_escalation", "become_ask_pass", "true", _NO_PROMPT),
    ("ANSIBLE_BECOME_EXE", "privilege_escalation", "become_exe", "set", _SUDO_FIXED),
    ("ANSIBLE_BECOME_FLAGS", "privilege_escalation", "become_flags", "set", _SUDO_FIXED),
    ("ANSIBLE_HASH_BEHAVIOUR", "defaults", "hash_behaviour", "merge", "llamafleet replaces a variable whole"),
    ("ANSIBLE_SSH_ARGS", "ssh_connection", "ssh_args", "set", _SSH_ARGS),
    ("ANSIBLE_SSH_COMMON_ARGS", "ssh_connection", "ssh_common_args", "set", _SSH_ARGS),
    ("ANSIBLE_SSH_EXTRA_ARGS", "ssh_connection", "ssh_extra_args", "set", _SSH_ARGS),
    ("ANSIBLE_INVENTORY_ENABLED", "inventory", "enable_plugins", "set", "llamafleet reads YAML, INI and scripts"),
)


@dataclass(frozen=True)
class Settings:
    """What the configuration says, typed: `file` is the ansible.cfg read (None when there is none)."""

    file: str | None = None
    inventory: tuple[str, ...] = ()
    inventory_by: str = ""  # what named the inventory, for messages
    forks: int | None = None
    fallback: dict[str, Any] = field(default_factory=dict)  # variable -> value where the inventory sets none
    vault_password_file: str | None = None
    vault_identity_list: tuple[str, ...] = ()
    vault_identity: str | None = None
    ignored: Ignored = Ignored()
    warnings: tuple[str, ...] = ()


def find(environ: Mapping[str, str], cwd: Path) -> tuple[Path | None, list[str]]:
    """The ansible.cfg Ansible would read, and the warning about a ./ansible.cfg it skips."""
    candidates: list[Path] = []
    if "ANSIBLE_CONFIG" in environ:
        given = _resolved(environ["ANSIBLE_CONFIG"], cwd)
        candidates.append(given / "ansible.cfg" if given.is_dir() else given)
    named = candidates[0] if candidates else None
    local = cwd / "ansible.cfg"
    try:
        world_writable = bool(cwd.stat().st_mode & stat.S_IWOTH)
    except OSError:  # a folder that went away: nothing to read there
        world_writable = True
    if not world_writable:
        candidates.append(local)
    candidates += [Path(os.path.expanduser("~/.ansible.cfg")), Path("/etc/ansible/ansible.cfg")]
    found = next((path for path in candidates if path.exists() and os.access(path, os.R_OK)), None)
    if world_writable and found != named and local.exists():
        return found, [
            f"{printable(str(local))}: ignored: the current folder is world-writable (as Ansible ignores it)"
        ]
    return found, []


def read(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """The configuration of a run: the ansible.cfg found (if any) and the ANSIBLE_* variables; ConfigError (exit 2)
    naming the file, section and key, or the variable, for a value llamafleet cannot use."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    path, warnings = find(environ, cwd)
    reader = _Reader(_parse(path) if path else None, path, environ, cwd)
    inventory = reader.paths("inventory")
    extensions, patterns = reader.listed("ignore_extensions"), reader.listed("ignore_patterns")
    return Settings(
        file=printable(str(path)) if path else None,
        inventory=tuple(inventory),
        inventory_by=reader.origin("inventory") if inventory else "",
        forks=reader.whole("forks", 1),
        fallback=reader.fallback(),
        vault_password_file=reader.path("vault_password_file"),
        vault_identity_list=tuple(reader.listed("vault_identity_list") or ()),
        vault_identity=reader.text("vault_identity"),
        ignored=Ignored(tuple(IGNORED_EXTENSIONS if extensions is None else extensions), tuple(patterns or ())),
        warnings=tuple(warnings + reader.warnings()),
    )


def _parse(path: Path) -> configparser.ConfigParser:
    name = printable(str(path))
    if path.suffix not in (".cfg", ".ini"):
        raise ConfigError("an Ansible configuration file must end in .cfg or .ini (as Ansible requires)", file=name)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not an ansible.cfg", file=name)
        parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
        parser.read_string(data.decode("utf-8"), source=name)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=name) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})", file=name) from None
    except configparser.Error as exc:
        problem = " ".join(printable(str(exc)).split())
        raise ConfigError(f"cannot read as an INI file: {shorten(problem, 160)}", file=name) from None
    return parser


class _Reader:
    """The values of KEYS, each from its environment variable or else the file, typed, with where it came from."""

    def __init__(
        self, parser: configparser.ConfigParser | None, path: Path | None, environ: Mapping[str, str], cwd: Path
    ) -> None:
        self.parser, self.file, self.environ, self.cwd = parser, path, environ, cwd

    def raw(self, name: str) -> tuple[str, str, Path] | None:
        """(value, origin, folder relative paths start from), or None when the setting is not given."""
        key = KEYS[name]
        if key.env and self.environ.get(key.env):
            return self.environ[key.env], key.env, self.cwd
        for section, option in key.entries:
            value = self.file_value(section, option)
            if value:
                return value, f"{printable(str(self.file))} [{section}] {option}", self.file.parent
        return None

    def file_value(self, section: str, option: str) -> str | None:
        if self.parser is None:
            return None
        value = self.parser.get(section, option, raw=True, fallback=None)
        return None if value is None else _unquoted(value.strip())

    def origin(self, name: str) -> str:
        found = self.raw(name)
        return found[1] if found else ""

    def error(self, origin: str, message: str) -> ConfigError:
        file, _, where = origin.rpartition(" [")
        if not file:  # an environment variable
            return ConfigError(message, where=origin)
        return ConfigError(message, file=file, where=f"[{where}")

    def text(self, name: str) -> str | None:
        found = self.raw(name)
        return found[0] if found else None

    def whole(self, name: str, minimum: int, maximum: int | None = None) -> int | None:
        found = self.raw(name)
        if found is None:
            return None
        value, origin, _ = found
        try:
            number = decimal.Decimal(value)
            whole = int(number)
            if number != whole:
                raise ValueError
        except (decimal.DecimalException, ValueError):
            raise self.error(origin, f"must be a whole number, not {printable(shorten(value))!r}") from None
        if whole < minimum or (maximum is not None and whole > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(origin, f"must be {bounds}, not {whole}")
        return whole

    def boolean(self, name: str) -> bool | None:
        found = self.raw(name)
        return None if found is None else found[0].lower() in TRUE_WORDS

    def listed(self, name: str) -> list[str] | None:
        found = self.raw(name)
        return None if found is None else [_unquoted(item.strip()) for item in found[0].split(",")]

    def path(self, name: str) -> str | None:
        found = self.raw(name)
        return None if found is None else str(_resolved(found[0], found[2]))

    def paths(self, name: str) -> list[str]:
        found = self.raw(name)
        items = [item.strip() for item in found[0].split(",")] if found else []
        return [str(_resolved(item, found[2])) for item in items if item]

    def fallback(self) -> dict[str, Any]:
        """The variables ansible.cfg gives a value where the inventory sets none, each checked as the inventory's."""
        self.check_transport()
        values = {
            "remote_user": self.text("remote_user"),
            "remote_port": self.whole("remote_port", 1, 65535),
            "private_key_file": self.path("private_key_file"),
            "timeout": self.whole("timeout", 1),
            "become": self.boolean("become"),
            "become_user": self.text("become_user"),
            "become_method": self.text("become_method"),
        }
        found = {}
        for name, value in values.items():
            if value is None:
                continue
            problem = variables.check_value(FALLBACKS[name], value)
            if problem:
                raise self.error(self.origin(name), problem)
            found[FALLBACKS[name]] = value
        if found.get("ansible_become") and found.get("ansible_become_method", "sudo") not in SUDO:
            method = found["ansible_become_method"]
            raise self.error(
                self.origin("become_method"), f"llamafleet becomes another user with sudo only, not {method!r}"
            )
        return found

    def check_transport(self) -> None:
        transport = self.text("transport")
        if transport and transport not in SSH_TRANSPORTS:
            message = (
                f"llamafleet reaches hosts over SSH only, not {printable(shorten(transport))!r} (remove it or use ssh)"
            )
            raise self.error(self.origin("transport"), message)

    def warnings(self) -> list[str]:
        """One line for each key set that llamafleet does not honour, naming where it is set."""
        found = []
        for env, section, option, when, why in WARNED:
            value, where = self.environ.get(env), env
            if not value:
                value = self.file_value(section, option)
                where = f"{printable(str(self.file))}: [{section}] {option}"
            if not value:
                continue
            as_bool = value.lower() in TRUE_WORDS
            if when in ("set", value.lower()) or (when == "true" and as_bool) or (when == "false" and not as_bool):
                found.append(f"{where}: ignored: {why}")
        return found


def _unquoted(value: str) -> str:
    """A value without the quotes around it, as Ansible's unquote takes them off."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _resolved(value: str, base: Path) -> Path:
    """A path as Ansible resolves one from its configuration: variables and ~ expanded, relative to `base`."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    return Path(os.path.normpath(os.path.join(base, expanded)))


def vault_environment(settings: Settings, environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment vault passwords are read with: ansible.cfg's vault_identity stands for
    ANSIBLE_VAULT_IDENTITY where that is not set (the variable beats the key, as in Ansible)."""
    environ = os.environ if environ is None else environ
    if not settings.vault_identity or environ.get("ANSIBLE_VAULT_IDENTITY"):
        return environ
    return {**environ, "ANSIBLE_VAULT_IDENTITY": settings.vault_identity}
