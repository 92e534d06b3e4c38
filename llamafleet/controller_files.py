"""Controller files an inventory names, checked to be what they claim before a byte of them leaves or one is written.

A known_hosts file parses as one (every line host patterns, a key type and that type's base64 key); an API key file
is one line of key-like text; a new file (a key made on first provision, a known_hosts file made by
--accept-new-host-keys) is made only where llamafleet's own files go. The llama.cpp source archive is checked by
role llama_cpp (a tarball holding a llama.cpp tree). `connection_reads` lists what the connections read, for --check.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import variables
from .errors import InventoryError
from .yamlfile import printable, shorten

# -- known_hosts ---------------------------------------------------------------------------------------------

MARKERS = ("@cert-authority", "@revoked")
# OpenSSH's key type names: ssh-ed25519, ecdsa-sha2-nistp256, sk-ssh-ed25519@openssh.com, ssh-rsa...
KEY_TYPE = re.compile(r"[a-z0-9][a-z0-9.@-]{0,63}")
# A host pattern as ssh-keygen and ssh write them: a name or address, [name]:port, wildcards, negation; or hashed.
HOST_PATTERN = re.compile(r"!?[A-Za-z0-9_.:%*?\[\]-]+")
KNOWN_HOSTS_LINE_LIMIT = 64 * 1024  # an RSA-16384 key is under 3 KiB of base64; the rest is host patterns


@dataclass(frozen=True)
class HostKeyLine:
    """One entry of a known_hosts file, read but not interpreted: which hosts, which key, with which marker."""

    marker: str | None  # @cert-authority, @revoked or None
    patterns: str
    kind: str
    blob: bytes


def parse_host_key_line(line: str) -> HostKeyLine:
    """One non-blank, non-comment line of a known_hosts file; ValueError says why it is not one (quoting none of it
    but a marker and a key type name)."""
    fields = line.split()
    marker = fields.pop(0) if fields[0].startswith("@") else None
    if marker not in (None, *MARKERS):
        raise ValueError(f"unknown marker {printable(shorten(marker, 30))} (OpenSSH has @cert-authority and @revoked)")
    if len(fields) < 3:
        raise ValueError("expected host patterns, a key type and a base64 key")
    patterns, kind, text = fields[:3]
    for pattern in patterns.split(","):
        if pattern.startswith("|") and not _hashed_name_ok(pattern):
            raise ValueError(f"malformed hashed host name {printable(pattern[:20])}...")
        if not pattern.startswith("|") and not HOST_PATTERN.fullmatch(pattern):
            raise ValueError("the first field is not a list of host names or patterns")
    if not KEY_TYPE.fullmatch(kind):
        raise ValueError("the second field is not an SSH key type")
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {kind} key is not valid base64") from None
    named = _named_type(blob)
    if named != kind:
        found = f"a {named} key" if named else "no SSH key"
        raise ValueError(f"cannot read the {kind} key: its data is {found}")
    return HostKeyLine(marker, patterns, kind, blob)


def _hashed_name_ok(pattern: str) -> bool:
    parts = pattern.split("|")
    try:
        return len(parts) == 4 and parts[1] == "1" and len(base64.b64decode(parts[2], validate=True)) == 20
    except (binascii.Error, ValueError):
        return False


def _named_type(blob: bytes) -> str | None:
    """The key type an SSH public key blob names first (a length-prefixed string), or None."""
    try:
        (size,) = struct.unpack(">I", blob[:4])
        name = blob[4 : 4 + size].decode("ascii")
    except (struct.error, UnicodeDecodeError):
        return None
    return name if len(name) == size and KEY_TYPE.fullmatch(name) else None


def known_hosts_problem(path: Path) -> str | None:
    """Why the existing file at `path` is not a known_hosts file ("FILE:LINE: why"), or None when it is one."""
    try:
        info = path.stat()
    except OSError as exc:
        return f"{printable(str(path))}: cannot read: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"{printable(str(path))} is not a file"
    return _known_hosts_problem(str(path), info.st_size, info.st_mtime_ns, info.st_ino)


def known_hosts_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Each line of a known_hosts file with its number, as ssh reads them: ended by "\n" only (a "\r" inside a
    line ends nothing), read at most KNOWN_HOSTS_LINE_LIMIT + 1 bytes at a time. The check and the reader both
    read through this, so they see the same lines."""
    with open(path, "rb") as handle:
        yield from enumerate(iter(lambda: handle.readline(KNOWN_HOSTS_LINE_LIMIT + 1), b""), 1)


@lru_cache(maxsize=16)
def _known_hosts_problem(path: str, size: int, mtime_ns: int, inode: int) -> str | None:
    """Read once per version of the file, however many hosts name it."""
    try:
        for number, raw in known_hosts_lines(path):
            problem = line_problem(raw)
            if problem:
                return f"{printable(path)}:{number}: {problem}: not a known_hosts file"
    except OSError as exc:
        return f"{printable(path)}: cannot read: {exc.strerror}"
    return None


def line_problem(raw: bytes) -> str | None:
    """Why one raw line of a known_hosts file is not one (too long, not UTF-8, not an entry), or None."""
    if len(raw) > KNOWN_HOSTS_LINE_LIMIT:
        return f"a line longer than {KNOWN_HOSTS_LINE_LIMIT // 1024} KiB"
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if not line or line.startswith("#"):
        return None
    try:
        parse_host_key_line(line)
    except ValueError as exc:
        return str(exc)
    return None


def new_known_hosts_problem(path: Path, default: Path, folder: Path) -> str | None:
    """Why --accept-new-host-keys may not make a known_hosts file at `path` (None: it exists, or may be made).

    A new file is made only at the default path or in the inventory's `folder`, so an inventory cannot have
    host-key lines written into a new file anywhere else (a sudoers.d or profile.d file, ld.so.preload...).
    """
    if path.exists():
        return None
    if path.resolve() == default.expanduser().resolve() or _inside(path, folder):
        return None
    return (
        f"{printable(str(path))} does not exist, and --accept-new-host-keys makes a new known_hosts file only at "
        f"{default} or in the inventory's folder {printable(str(folder))}; create the file first to use it"
    )


def check_new_known_hosts(inventory_file: Path, hosts: Iterable) -> None:
    """Before --accept-new-host-keys connects: each host's known_hosts file exists (and parsed as the inventory
    loaded) or may be made where it is (`hosts`: inventory.Host). InventoryError names the file, host and key."""
    default = Path(str(variables.catalogue()["known_hosts_file"].default))
    for host in hosts:
        path = _beside(host.connection.known_hosts, inventory_file.parent)
        problem = new_known_hosts_problem(path, default, inventory_file.parent)
        if problem:
            raise InventoryError(
                problem, file=printable(str(inventory_file)), where=f"host {host.name}", key="known_hosts_file"
            )


# -- the API key file ----------------------------------------------------------------------------------------

KEY_FILE_LIMIT = 4096
KEY_TEXT = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")
KEY_RULE = "one line of at most 512 letters, digits and - . _ ~ + / = (the key)"


def api_key(path: Path, where: str | None = None) -> bytes:
    """The key of an API key file (its one line and a newline, as the head holds it); never shown.

    InventoryError (naming `where`, the host, and key api_key_file) when the file is not one line of key-like
    text: a file that is something else (credentials, a private key, a device) is not sent to the head.
    """
    shown = printable(str(path))
    try:
        text: str | None = _small_file(path, KEY_FILE_LIMIT).decode("ascii")
    except UnicodeDecodeError:
        text = None
    except OSError as exc:
        raise InventoryError(f"cannot read {shown}: {exc.strerror or exc}", where=where, key="api_key_file") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()] if text is not None else None
    if lines == []:
        raise InventoryError(f"{shown} holds no key", where=where, key="api_key_file")
    if lines is None or len(lines) > 1 or not KEY_TEXT.fullmatch(lines[0]):
        raise InventoryError(
            f"{shown} is not an API key file: it must hold {KEY_RULE}", where=where, key="api_key_file"
        )
    return f"{lines[0]}\n".encode()


def _small_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; OSError for anything else (a FIFO or device is never
    opened, a larger file never read)."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise OSError("not a file")
    if info.st_size > limit:
        raise OSError(f"{info.st_size} bytes, more than a key file holds")
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read(limit + 1)


def new_key_problem(path: Path, folder: Path) -> str | None:
    """Why no new API key may be made at `path`, which does not exist (None: it may).

    A key is made only inside the inventory's `folder` (where it goes by default): an inventory cannot have a
    file written anywhere else on the controller. A key kept elsewhere is made by hand.
    """
    where = printable(str(path))
    if path.is_symlink():
        return f"{where} is a symlink to a missing file: make the key file by hand, or point api_key_file at it"
    if _inside(path, folder):
        return None
    return (
        f"{where} does not exist, and llamafleet makes a new key only inside the inventory's folder "
        f"{printable(str(folder))}; make the key file by hand ({KEY_RULE}), or name a path inside that folder"
    )


def _inside(path: Path, folder: Path) -> bool:
    """`path` (symlinks and .. resolved as far as it exists) lies in `folder` or below."""
    return path.resolve().is_relative_to(folder.resolve())


# -- what a run reads ----------------------------------------------------------------------------------------


def connection_reads(connections: Iterable, base: Path) -> list[tuple[Path, str]]:
    """(path, variable) of each controller file the SSH connections read, once each: known_hosts files and
    private keys (`connections`: connvars.Settings; relative paths lie in `base`, the inventory's folder)."""
    found: dict[Path, str] = {}
    for settings in connections:
        found.setdefault(_beside(settings.known_hosts, base), "known_hosts_file")
        if settings.key_file:
            found.setdefault(_beside(str(settings.key_file), base), "ansible_ssh_private_key_file")
    return list(found.items())


def _beside(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def reads_line(path: Path, variable: str) -> str:
    """How --check names a controller file the run reads."""
    return f"reads on the controller: {printable(str(path))} ({variable})"
