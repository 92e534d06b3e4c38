"""Ansible connection variables llamafleet does not take as they are: honoured, warned about, or refused."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import controller_files, variables
from .errors import InventoryError
from .yamlfile import shorten

SSH_CONNECTIONS = ("ssh", "smart", "paramiko", "paramiko_ssh")
DEFAULT_KNOWN_HOSTS = variables.catalogue()["known_hosts_file"].default  # role base's defaults.yml

# Older spellings Ansible still reads, honoured under the name llamafleet reads; two different values are refused.
ALIASES: dict[str, tuple[str, ...]] = {
    "ansible_host": ("ansible_ssh_host",),
    "ansible_port": ("ansible_ssh_port",),
    "ansible_user": ("ansible_ssh_user",),
    "ansible_password": ("ansible_ssh_pass", "ansible_ssh_password"),
    "ansible_become_password": ("ansible_become_pass", "ansible_sudo_pass"),
    "ansible_ssh_private_key_file": ("ansible_private_key_file",),
}
# Where these end up, ssh(1) reads them in this order and keeps the first value of each option.
ARGS_VARS = ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")
KEY_CHECKING_VARS = ("ansible_host_key_checking", "ansible_ssh_host_key_checking")
HONOURED = {
    *ALIASES,
    *(alias for names in ALIASES.values() for alias in names),
    *ARGS_VARS,
    *KEY_CHECKING_VARS,
    "ansible_become",
    "ansible_become_user",
    "ansible_become_method",
    "ansible_connection",
    "ansible_group_priority",
}

# Refused when set to a true value: ignoring them would run commands as the wrong user.
REFUSED = {
    "ansible_sudo": "use ansible_become: true",
    "ansible_sudo_user": "use ansible_become_user",
    "ansible_su": "llamafleet becomes another user with sudo only (ansible_become)",
    "ansible_su_user": "llamafleet becomes another user with sudo only (ansible_become_user)",
}
_NO_COPY_PROGRAM = "llamafleet copies files through its SSH session (no scp or sftp program)"
_SUDO_FIXED = "llamafleet runs sudo from the PATH as 'sudo -H -S|-n -u USER'"
IGNORED = {
    "ansible_python_interpreter": "llamafleet runs no Python on the hosts",
    "ansible_shell_type": "llamafleet runs every command with sh -c",
    "ansible_shell_executable": "llamafleet runs every command with sh -c",
    "ansible_ssh_executable": "llamafleet runs commands over paramiko and streams large files with `ssh` from the PATH",
    "ansible_ssh_pipelining": "llamafleet sends commands and files over one SSH connection; nothing to pipeline",
    "ansible_pipelining": "llamafleet sends commands and files over one SSH connection; nothing to pipeline",
    "ansible_sftp_extra_args": _NO_COPY_PROGRAM,
    "ansible_scp_extra_args": _NO_COPY_PROGRAM,
    "ansible_ssh_transfer_method": _NO_COPY_PROGRAM,
    "ansible_scp_if_ssh": _NO_COPY_PROGRAM,
    "ansible_sftp_batch_mode": _NO_COPY_PROGRAM,
    "ansible_ssh_timeout": "set ssh_connect_timeout instead",
    "ansible_timeout": "set ssh_connect_timeout instead",
    "ansible_ssh_retries": "llamafleet does not retry a connection; a host that cannot be reached is reported",
    "ansible_become_exe": _SUDO_FIXED,
    "ansible_become_flags": _SUDO_FIXED,
    "ansible_sudo_exe": _SUDO_FIXED,
    "ansible_sudo_flags": _SUDO_FIXED,
    "ansible_control_path": "llamafleet keeps one connection per host for a run (no ControlMaster)",
    "ansible_control_path_dir": "llamafleet keeps one connection per host for a run (no ControlMaster)",
    "ansible_ssh_use_tty": "llamafleet runs commands without a terminal",
}
GENERIC = "llamafleet does not use this Ansible variable; ignored"

# ssh(1) options that take a value; every other letter is a flag.
_WITH_VALUE = set("BbcDEeFIiJLlmOoPpQRSWw")
_LETTER_OPTIONS = {"J": "proxyjump", "p": "port", "l": "user", "i": "identityfile", "F": "configfile"}
# Options that, ignored, would reach another host, port or user than ssh would: refused with what to set instead.
_REDIRECTING = {
    "port": "set ansible_port instead",
    "user": "set ansible_user instead",
    "hostname": "set ansible_host instead",
    "proxycommand": "use -o ProxyJump=[user@]host[:port] (llamafleet checks the jump host's key)",
    "configfile": "llamafleet reads no ssh_config file; put host, port, user and ProxyJump in the inventory",
}


@dataclass(frozen=True)
class Hop:
    """An SSH endpoint: a ProxyJump hop or the target itself."""

    host: str
    port: int = 22
    user: str | None = None  # None: the local user name, as ssh does for a jump host

    @property
    def key_name(self) -> str:
        """The name known_hosts records its key under."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class Settings:
    """How llamafleet reaches one host: its variables with aliases and ssh arguments applied."""

    address: str
    port: int
    user: str
    key_file: str | None
    known_hosts: str
    become: bool
    become_user: str
    jumps: tuple[Hop, ...] = ()
    password: str | None = field(default=None, repr=False)
    become_password: str | None = field(default=None, repr=False)


def read(host: str, host_vars: Mapping[str, Any], file: str | None = None) -> tuple[Settings, list[str]]:
    """How to reach `host` given its resolved variables, and warnings about them (each naming `file` and the host).

    Raises InventoryError for a variable that would make llamafleet act wrongly. inventory.load() calls it once
    per host and keeps the settings on the host.
    """
    return _Reader(host, host_vars, file).read()


def parse_jumps(value: str) -> tuple[Hop, ...]:
    """ProxyJump's value: comma-separated [user@]host[:port] or ssh://[user@]host[:port]; "none" is no jump."""
    if value.strip().lower() == "none":
        return ()
    return tuple(_hop(part.strip()) for part in value.split(","))


def _hop(text: str) -> Hop:
    """One hop, its user and host held to the rules of ansible_user and of host names (ssh expands neither)."""
    user, _, rest = text.removeprefix("ssh://").rpartition("@")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host, port = rest, ""
    shown = repr(shorten(text))
    if not host or host.startswith("-") or (port and not port.isdigit()) or not 0 < int(port or 22) < 65536:
        raise ValueError(f"{shown} is not a jump host ([user@]host[:port])")
    problem = (user and variables.check_value("ansible_user", user)) or variables.name_problem(host, "host")
    if problem:
        raise ValueError(f"jump host {shown}: {problem}")
    return Hop(host, int(port or 22), user or None)


class _Reader:
    """One host's connection variables read once: the settings, plus warnings; refusals raise."""

    def __init__(self, host: str, host_vars: Mapping[str, Any], file: str | None) -> None:
        self.host, self.vars, self.file = host, host_vars, file
        self.warnings: list[str] = []

    def warn(self, name: str, text: str) -> None:
        self.warnings.append(f"{self.file or 'inventory'}: host {self.host}: {name}: {text}")

    def refuse(self, name: str, text: str) -> InventoryError:
        return InventoryError(text, file=self.file, where=f"host {self.host}", key=name)

    def read(self) -> tuple[Settings, list[str]]:
        self.check_connection()
        values = {name: self.aliased(name) for name in ALIASES}
        become = bool(self.vars.get("ansible_become"))
        self.check_become_method(become)
        options = self.ssh_options()
        jumps = self.jumps(options)
        known_hosts = self.known_hosts(options)
        self.check_known_hosts_path(known_hosts)
        self.check_key_checking(options)
        self.warn_ignored()
        result = Settings(
            address=str(values["ansible_host"] or self.host),
            port=int(values["ansible_port"] or 22),
            user=str(values["ansible_user"] or "root"),
            key_file=values["ansible_ssh_private_key_file"],
            known_hosts=known_hosts,
            become=become,
            become_user=str(self.vars.get("ansible_become_user") or "root"),
            jumps=jumps,
            password=values["ansible_password"],
            become_password=values["ansible_become_password"],
        )
        return result, self.warnings

    def check_connection(self) -> None:
        value = self.vars.get("ansible_connection")
        if value is None or str(value).removeprefix("ansible.builtin.").removeprefix("ansible.legacy.") in (
            SSH_CONNECTIONS
        ):
            return
        raise self.refuse(
            "ansible_connection", f"llamafleet reaches hosts over SSH only, not {value!r} (remove it or use ssh)"
        )

    def aliased(self, name: str) -> Any:
        """The value of `name` or of one of its older spellings; two spellings that disagree are refused."""
        given = [(n, self.vars[n]) for n in (name, *ALIASES[name]) if self.vars.get(n) is not None]
        if not given:
            return None
        first, value = given[0]
        for other, other_value in given[1:]:
            if other_value != value:  # the values are not shown: some of these are passwords
                raise self.refuse(other, f"differs from {first}; set only one of them")
        if first != name:
            problem = variables.check_value(name, value)
            if problem:
                raise self.refuse(first, problem)
        return value

    def check_become_method(self, become: bool) -> None:
        method = self.vars.get("ansible_become_method")
        if method is None or str(method).removeprefix("ansible.builtin.") == "sudo":
            return
        if become:
            raise self.refuse(
                "ansible_become_method", f"llamafleet becomes another user with sudo only, not {method!r}"
            )
        self.warn("ansible_become_method", "ignored: ansible_become is off (llamafleet would use sudo)")

    def ssh_options(self) -> dict[str, tuple[str, str]]:
        """Options of the ssh argument variables: keyword -> (value, variable), the first value of each kept."""
        kept: dict[str, tuple[str, str]] = {}
        for var in ARGS_VARS:
            ignored: list[str] = []
            for keyword, value, shown in self.split_args(var):
                if keyword in _REDIRECTING and not (keyword == "proxycommand" and value.lower() == "none"):
                    raise self.refuse(var, f"{shown}: {_REDIRECTING[keyword]}")
                if keyword not in ("proxyjump", "userknownhostsfile", "stricthostkeychecking"):
                    ignored.append(shown)
                elif keyword in kept:
                    ignored.append(f"{shown} (an earlier value wins, as in ssh)")
                else:
                    kept[keyword] = (value, var)
            if ignored:
                self.warn(
                    var,
                    f"ignored {', '.join(ignored)} (llamafleet connects with paramiko and takes only "
                    "ProxyJump, UserKnownHostsFile and StrictHostKeyChecking from ssh arguments)",
                )
        return kept

    def split_args(self, var: str) -> list[tuple[str, str, str]]:
        text = self.vars.get(var)
        if text is None:
            return []
        try:
            return list(_options(shlex.split(str(text))))
        except ValueError as exc:
            raise self.refuse(var, f"cannot read as ssh arguments: {exc}") from None

    def jumps(self, options: dict[str, tuple[str, str]]) -> tuple[Hop, ...]:
        if "proxyjump" not in options:
            return ()
        value, var = options["proxyjump"]
        try:
            return parse_jumps(value)
        except ValueError as exc:
            raise self.refuse(var, f"ProxyJump: {exc}") from None

    def known_hosts(self, options: dict[str, tuple[str, str]]) -> str:
        own = str(self.vars.get("known_hosts_file") or DEFAULT_KNOWN_HOSTS)
        if "userknownhostsfile" not in options:
            return own
        value, var = options["userknownhostsfile"]
        files = value.split()
        if not files or files[0] == "/dev/null":
            self.warn(var, f"UserKnownHostsFile={value} ignored: llamafleet always checks host keys, in {own}")
            return own
        if own != DEFAULT_KNOWN_HOSTS and own != files[0]:
            self.warn(var, f"UserKnownHostsFile ignored: known_hosts_file ({own}) is set")
            return own
        if len(files) > 1:
            self.warn(var, f"UserKnownHostsFile: only the first file ({files[0]}) is read")
        return files[0]

    def check_known_hosts_path(self, value: str) -> None:
        """A known_hosts that exists must be a file that parses as one, before any line is read from it for a
        connection or appended to it (a missing one means: no host known yet)."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.file:
            path = Path(self.file).parent / path
        if path.exists() and not path.is_file():
            raise self.refuse("known_hosts_file", f"{path} is not a file")
        problem = controller_files.known_hosts_problem(path) if path.exists() else None
        if problem:
            raise self.refuse("known_hosts_file", problem)

    def check_key_checking(self, options: dict[str, tuple[str, str]]) -> None:
        """Host keys are always checked: saying otherwise is ignored, with a warning."""
        how = "llamafleet always checks host keys (--accept-new-host-keys records those of new hosts)"
        if "stricthostkeychecking" in options:
            value, var = options["stricthostkeychecking"]
            if value.lower() not in ("yes", "ask"):
                self.warn(var, f"StrictHostKeyChecking={value} ignored: {how}")
        for var in KEY_CHECKING_VARS:
            value = self.vars.get(var)
            if value is not None and str(value).lower() in ("false", "no", "off", "0"):
                self.warn(var, f"ignored: {how}")

    def warn_ignored(self) -> None:
        for name in sorted(self.vars):
            if not name.startswith("ansible_") or name in HONOURED or self.vars[name] is None:
                continue
            if name in REFUSED and self.vars[name]:
                raise self.refuse(name, f"not supported: {REFUSED[name]}")
            if name.endswith("_interpreter") and name not in IGNORED:
                self.warn(name, "ignored: llamafleet runs no interpreter on the hosts, only sh")
            else:
                self.warn(name, f"ignored: {IGNORED.get(name, GENERIC)}")


def _options(tokens: list[str]):
    """(keyword, value, as written) for each option in ssh(1) arguments; keywords in lower case."""
    index = 0
    while index < len(tokens):
        word = tokens[index]
        index += 1
        if not word.startswith("-") or word == "-":
            yield "argument", word, word
            continue
        letters = word[1:]
        for at, letter in enumerate(letters):
            if letter not in _WITH_VALUE:
                yield f"-{letter}", "", f"-{letter}"
                continue
            value = letters[at + 1 :]
            if not value and index < len(tokens):
                value, index = tokens[index], index + 1
            yield _keyword(letter, value), _option_value(letter, value), f"-{letter} {value}"
            break


def _keyword(letter: str, value: str) -> str:
    if letter == "o":
        return re.split(r"\s*=\s*|\s+", value.strip(), maxsplit=1)[0].lower()
    return _LETTER_OPTIONS.get(letter, f"-{letter}")


def _option_value(letter: str, value: str) -> str:
    if letter != "o":
        return value
    parts = re.split(r"\s*=\s*|\s+", value.strip(), maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""
