"""OpenSSH known_hosts files: host patterns, hashed names and markers; the host-key policy and its refusals."""

from __future__ import annotations

import base64
import binascii
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

from .errors import ConnectError


@dataclass
class KnownHosts:
    """What an OpenSSH known_hosts file says about one host name ("host", or "[host]:port" off port 22)."""

    path: Path
    name: str
    keys: list[paramiko.PKey] = field(default_factory=list)
    revoked: dict[bytes, int] = field(default_factory=dict)  # key blob -> line; refused for every host
    authorities: list[int] = field(default_factory=list)  # @cert-authority lines for this name (not used)

    def pinned(self) -> list[paramiko.PKey]:
        return [key for key in self.keys if key.asbytes() not in self.revoked]

    def revoked_line(self, key: paramiko.PKey) -> int | None:
        return self.revoked.get(key.asbytes())


def read_known_hosts(path: Path, name: str) -> KnownHosts:
    """The entries of a known_hosts file for `name`; ValueError names the file and line it cannot read.

    Plain, hashed (|1|) and wildcard/negated host patterns match as in OpenSSH. @revoked keys are refused
    for every host. @cert-authority lines are recorded, not trusted: paramiko does not check host certificates.
    """
    found = KnownHosts(path, name)
    if not path.exists():
        return found
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read known_hosts {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            _add_known_host(found, line, number)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
    return found


def _add_known_host(found: KnownHosts, line: str, number: int) -> None:
    marker, patterns, key = _known_host_line(line)
    if marker == "@revoked":
        if key is not None:
            found.revoked[key.asbytes()] = number
    elif not _host_matches(patterns, found.name):
        return
    elif marker == "@cert-authority":
        found.authorities.append(number)
    elif key is not None:
        found.keys.append(key)


def _known_host_line(line: str) -> tuple[str | None, str, paramiko.PKey | None]:
    """(marker, host patterns, key) of one line; the key is None for a type paramiko cannot use."""
    fields = line.split()
    marker = fields.pop(0) if fields[0].startswith("@") else None
    if marker not in (None, "@revoked", "@cert-authority"):
        raise ValueError(f"unknown marker {marker} (OpenSSH has @cert-authority and @revoked)")
    if len(fields) < 3:
        raise ValueError("expected host patterns, a key type and a base64 key")
    patterns, kind, blob = fields[:3]
    for pattern in patterns.split(","):
        if pattern.startswith("|") and not _hashed_name_ok(pattern):
            raise ValueError(f"malformed hashed host name {pattern[:20]}...")
    try:
        data = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {kind} key is not valid base64") from None
    try:
        return marker, patterns, paramiko.PKey.from_type_string(kind, data)
    except UnknownKeyType:
        return marker, patterns, None  # paramiko neither offers nor accepts this type
    except (paramiko.SSHException, ValueError, TypeError, IndexError, struct.error) as exc:
        raise ValueError(f"cannot read the {kind} key: {exc}") from None


def _hashed_name_ok(pattern: str) -> bool:
    parts = pattern.split("|")
    try:
        return len(parts) == 4 and parts[1] == "1" and len(base64.b64decode(parts[2], validate=True)) == 20
    except (binascii.Error, ValueError):
        return False


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
    in every mode.
    """

    def __init__(self, owner: str, label: str, known: KnownHosts, accept_new: bool) -> None:
        self.owner, self.label, self.known, self.accept_new = owner, label, known, accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        line = self.known.revoked_line(key)
        if line:
            raise ConnectError(self.owner, f"{self.label}{_revoked_message(key, self.known.path, line)}")
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
        self.known.path.parent.mkdir(parents=True, exist_ok=True)
        with _KNOWN_HOSTS_LOCK, self.known.path.open("a") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


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
