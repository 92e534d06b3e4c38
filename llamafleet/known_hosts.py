"""OpenSSH known_hosts files: host patterns, hashed names and markers; the host-key policy and its refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shlex
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType

from .controller_files import KNOWN_HOSTS_LINE_LIMIT, known_hosts_lines, parse_host_key_line
from .errors import ConnectError


@dataclass
class KnownHosts:
    """What an OpenSSH known_hosts file says about one host name ("host", or "[host]:port" off port 22)."""

    path: Path
    name: str
    keys: list[paramiko.PKey] = field(default_factory=list)
    revoked: dict[bytes, int] = field(default_factory=dict)  # key blob -> line; refused for every host
    authorities: list[int] = field(default_factory=list)  # @cert-authority lines for this name (not used)
    unusable: list[tuple[int, str]] = field(default_factory=list)  # (line, key type): pinned, paramiko lacks the type

    def pinned(self) -> list[paramiko.PKey]:
        return [key for key in self.keys if key.asbytes() not in self.revoked]

    def revoked_line(self, key: paramiko.PKey) -> int | None:
        return self.revoked.get(key.asbytes())


def read_known_hosts(path: Path, name: str) -> KnownHosts:
    """The entries of a known_hosts file for `name`; ValueError names the file and line it cannot read.

    Plain, hashed (|1|) and wildcard/negated host patterns match as in OpenSSH. @revoked keys are refused
    for every host. @cert-authority lines are recorded, not trusted: paramiko does not check host certificates.
    Keys of a type paramiko cannot use (sk-ssh-ed25519@openssh.com...) are recorded too: the host is not new.
    """
    found = KnownHosts(path, name)
    if not path.exists():
        return found
    try:
        lines = [(number, raw.decode("utf-8")) for number, raw in known_hosts_lines(path)]  # as the check reads them
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read known_hosts {path}: {exc}") from None
    for number, line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > KNOWN_HOSTS_LINE_LIMIT:
            raise ValueError(f"{path}:{number}: a line longer than {KNOWN_HOSTS_LINE_LIMIT // 1024} KiB")
        try:
            _add_known_host(found, line, number)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
    return found


def _add_known_host(found: KnownHosts, line: str, number: int) -> None:
    marker, patterns, kind, key = _known_host_line(line)
    if marker == "@revoked":
        if key is not None:
            found.revoked[key.asbytes()] = number
    elif not _host_matches(patterns, found.name):
        return
    elif marker == "@cert-authority":
        found.authorities.append(number)
    elif key is not None:
        found.keys.append(key)
    else:
        found.unusable.append((number, kind))


def _known_host_line(line: str) -> tuple[str | None, str, str, paramiko.PKey | None]:
    """(marker, host patterns, key type, key) of one line; the key is None for a type paramiko cannot use."""
    entry = parse_host_key_line(line)
    try:
        return entry.marker, entry.patterns, entry.kind, paramiko.PKey.from_type_string(entry.kind, entry.blob)
    except UnknownKeyType:
        return entry.marker, entry.patterns, entry.kind, None  # paramiko neither offers nor accepts this type
    except (paramiko.SSHException, ValueError, TypeError, IndexError, struct.error) as exc:
        raise ValueError(f"cannot read the {entry.kind} key: {exc}") from None


def _host_matches(patterns: str, name: str) -> bool:
    """OpenSSH's rule for a comma-separated pattern list: one pattern matches and no negated (!) one does."""
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _pattern_matches(pattern.removeprefix("!"), name):
            if negated:
                return False
            matched = True
    return matched


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        _, _, salt, digest = pattern.split("|")
        mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(base64.b64encode(mac).decode(), digest)
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name.lower()) is not None


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """A key known_hosts does not pin for this name: refused, or with accept_new recorded (trust on first use).

    A revoked key is always refused. A pinned key that differs is paramiko's BadHostKeyException, refused
    in every mode. A host the file knows in a way paramiko cannot check (a key of a type it lacks, a
    @cert-authority line) is not new: refused in every mode, never recorded.
    """

    def __init__(self, owner: str, label: str, known: KnownHosts, accept_new: bool) -> None:
        self.owner, self.label, self.known, self.accept_new = owner, label, known, accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        line = self.known.revoked_line(key)
        if line:
            raise ConnectError(self.owner, f"{self.label}{_revoked_message(key, self.known.path, line)}")
        if self.known.unusable or (self.accept_new and self.known.authorities):
            raise ConnectError(self.owner, f"{self.label}{_not_new_message(self.known, hostname, key)}")
        if not self.accept_new:
            authorities = ""
            if self.known.authorities:
                lines = ", ".join(map(str, self.known.authorities))
                authorities = f" (lines {lines} are @cert-authority: llamafleet does not check host certificates)"
            raise ConnectError(
                self.owner,
                f"{self.label}unknown SSH host key of {hostname} ({key.get_name()} {key.fingerprint}) not in "
                f"{self.known.path}{authorities}; check it, then add it to that file or rerun with "
                "--accept-new-host-keys",
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        _append(self.known.path, f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _not_new_message(known: KnownHosts, hostname: str, key: paramiko.PKey) -> str:
    if known.unusable:
        line, kind = known.unusable[0]
        how = f"{known.path}:{line} pins a {kind} key for {hostname}, a type llamafleet (paramiko) cannot check"
    else:
        lines = ", ".join(map(str, known.authorities))
        how = f"{known.path} lines {lines} are @cert-authority for {hostname} (llamafleet does not check certificates)"
    return (
        f"{how}, so the host is not new and its key is not recorded; it offers {key.get_name()} {key.fingerprint}: "
        "check it, then add it to that file"
    )


def _append(path: Path, line: str) -> None:
    """`line` added at the end of a known_hosts file (made, in a folder of our own, when missing)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _KNOWN_HOSTS_LOCK, path.open("a+") as handle:
        handle.seek(0, 2)
        if handle.tell():
            handle.seek(handle.tell() - 1)
            if handle.read(1) != "\n":  # a last line without its newline stays a line of its own
                line = "\n" + line
        handle.write(line)


_KNOWN_HOSTS_LOCK = threading.Lock()


def _revoked_message(key: paramiko.PKey, path: Path, line: int) -> str:
    return f"SSH host key {key.get_name()} {key.fingerprint} is REVOKED ({path}:{line}); refusing to connect"


def changed_key_message(exc: paramiko.BadHostKeyException, name: str, known: KnownHosts) -> str:
    """Why a key other than the one pinned for `name` is refused: revoked, or changed (and how to drop the pin)."""
    line = known.revoked_line(exc.key)
    if line:
        return _revoked_message(exc.key, known.path, line)
    return (
        f"SSH host key CHANGED (now {exc.key.get_name()} {exc.key.fingerprint}, "
        f"{known.path} has {exc.expected_key.fingerprint}); refusing to connect. If the host was "
        f"reinstalled: ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(known.path))}"
    )
