"""SSH to one host through Fabric, with host keys checked and commands that keep secrets off argv."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import os
import re
import secrets
import shlex
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import paramiko
from fabric import Config, Connection
from paramiko.pkey import UnknownKeyType

from . import connvars
from .connvars import Hop
from .errors import CommandError, ConnectError, OperationError
from .inventory import Host

CHUNK = 1 << 18
KILL_GRACE = 10  # seconds between the TERM and the KILL that end a command past its time limit
TIMED_OUT = (124, 137)  # what `timeout` exits with when it stopped the command (TERM, then KILL)
SUDO_WAIT = 60  # seconds sudo may take to ask for the password or start the command
LOST_WAIT = 2.0  # seconds to let paramiko notice a dead transport after a channel closed without a status


@dataclass(frozen=True)
class Result:
    """What a remote command did."""

    command: str
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0


def quote(template: str, *args: object) -> str:
    """Fill `template`'s %s slots with shell-quoted arguments (never build commands with f-strings)."""
    return template % tuple(shlex.quote(str(arg)) for arg in args)


# -- known_hosts ---------------------------------------------------------------------------------


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


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
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


def _fabric_config() -> Config:
    """Fabric settings from our arguments only: no ~/.ssh/config, /etc/ssh/ssh_config or fabric.yml is read,
    so nothing outside the inventory changes the host, port, user, identity or jump hosts."""
    return Config(lazy=True, ssh_config=paramiko.SSHConfig())


# -- the connection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Wrapped:
    """A command line ready to send; with a sudo password, the markers that say when sudo asks or has started."""

    line: str
    password: bytes = field(default=b"", repr=False)
    prompt: bytes = b""
    ready: bytes = b""


class HostConnection:
    """One SSH connection to a host, opened lazily and reused for every command of a run."""

    def __init__(self, host: Host, *, accept_new_host_keys: bool = False, base_dir: Path | None = None) -> None:
        self.host = host
        self.name = host.name
        self.settings = connvars.settings(host)
        self.accept_new = accept_new_host_keys
        self.base_dir = base_dir or Path.cwd()
        self.connect_timeout = int(host.vars.get("ssh_connect_timeout") or 10)
        self.command_timeout = int(host.vars.get("ssh_command_timeout") or 3600)
        self._conn: Connection | None = None
        self._hops: list[Connection] = []
        self._lock = threading.Lock()

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def known_hosts(self) -> Path:
        return self._path(self.settings.known_hosts)

    @property
    def user(self) -> str:
        return self.settings.user

    @property
    def become(self) -> bool:
        return self.settings.become and self.user != self.settings.become_user

    def open(self) -> Connection:
        with self._lock:
            if self._conn is not None and not self._conn.is_connected:
                self._close_all()  # dropped while idle: no command was running, so connect again
            if self._conn is None:
                self._conn = self._connect()
            return self._conn

    def _connect(self) -> Connection:
        gateway: Connection | None = None
        try:
            for hop in self.settings.jumps:
                gateway = self._open(hop, gateway, jump=True)
                self._hops.append(gateway)
            target = Hop(self.settings.address, self.settings.port, self.user)
            return self._open(target, gateway, jump=False)
        except BaseException:
            self._close_all()
            raise

    def _open(self, where: Hop, gateway: Connection | None, *, jump: bool) -> Connection:
        """Open one SSH connection (a jump host or the target), its host key pinned from known_hosts."""
        kwargs: dict = {"banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout}
        if self.settings.key_file:
            kwargs["key_filename"] = str(self._path(self.settings.key_file))
        if self.settings.password and not jump:  # the target's password is never offered to a jump host
            kwargs["password"] = self.settings.password
        conn = Connection(
            where.host,
            user=where.user,
            port=where.port,
            config=_fabric_config(),
            gateway=gateway or False,
            connect_timeout=self.connect_timeout,
            connect_kwargs=kwargs,
        )
        label = f"jump host {where.key_name}: " if jump else ""
        known = self._known(where, label)
        for key in known.pinned():
            conn.client.get_host_keys().add(where.key_name, key.get_name(), key)
        conn.client.set_missing_host_key_policy(_HostKeyPolicy(self.name, label, known, self.accept_new))
        self._handshake(conn, where, label, known, via=self.settings.jumps[-1] if gateway else None)
        conn.transport.set_keepalive(15)
        return conn

    def _known(self, where: Hop, label: str) -> KnownHosts:
        try:
            return read_known_hosts(self.known_hosts, where.key_name)
        except ValueError as exc:
            raise ConnectError(self.name, f"{label}{exc}") from None

    def _handshake(self, conn: Connection, where: Hop, label: str, known: KnownHosts, via: Hop | None) -> None:
        try:
            conn.open()
        except ConnectError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise ConnectError(self.name, label + self._changed_key_message(exc, where, known)) from None
        except paramiko.AuthenticationException as exc:
            user = conn.user
            raise ConnectError(self.name, f"{label}SSH authentication as {user} failed: {exc}") from None
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
            through = f" through jump host {via.key_name}" if via else ""
            where_ = f"{where.host}:{where.port}{through}"
            raise ConnectError(self.name, f"{label}cannot connect to {where_}: {exc or type(exc).__name__}") from None

    def _changed_key_message(self, exc: paramiko.BadHostKeyException, where: Hop, known: KnownHosts) -> str:
        line = known.revoked_line(exc.key)
        if line:
            return _revoked_message(exc.key, known.path, line)
        return (
            f"SSH host key CHANGED (now {exc.key.get_name()} {exc.key.fingerprint}, "
            f"{known.path} has {exc.expected_key.fingerprint}); refusing to connect. If the host was "
            f"reinstalled: ssh-keygen -R {shlex.quote(where.key_name)} -f {shlex.quote(str(known.path))}"
        )

    def _wrap(self, command: str, limit: float) -> _Wrapped:
        """The command line to send: stopped on the host at `limit` (`timeout`), under sudo when becoming.

        With a sudo password, sudo prompts with a random marker and the command announces itself with
        another: the password is written only after the prompt, so it never reaches the command's stdin.
        """
        bounded = quote("timeout -k %s %s sh -c %s", KILL_GRACE, f"{limit:g}", command)
        if not self.become:
            return _Wrapped(bounded)
        target, password = self.settings.become_user, self.settings.become_password
        if not password:
            return _Wrapped(quote("sudo -H -n -u %s -- ", target) + bounded)
        token = secrets.token_hex(12)
        prompt, ready = f"[llamafleet sudo {token}]", f"[llamafleet started {token}]"
        starter = quote("printf '%%s\\n' %s >&2; exec ", ready) + bounded
        line = quote("sudo -H -S -p %s -u %s -- sh -c %s", prompt, target, starter)
        return _Wrapped(line, f"{password}\n".encode(), prompt.encode(), f"{ready}\n".encode())

    def run(
        self,
        command: str,
        *,
        stdin: bytes | BinaryIO | None = None,
        timeout: float | None = None,
        stdout: BinaryIO | None = None,
    ) -> Result:
        """Run a shell command (as root when ansible_become); never raises on a non-zero status.

        Past `timeout` (ssh_command_timeout) the command is stopped on the host and CommandError says so; a
        connection lost meanwhile is ConnectError. With `stdout`, the output streams there (Result.stdout is "").
        """
        limit = timeout or self.command_timeout
        wrapped = self._wrap(command, limit)
        transport = self.open().transport
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(self.name, f"SSH session failed: {exc}") from None
        captured = io.BytesIO() if stdout is None else None
        exchange = _Exchange(channel, wrapped, stdout if stdout is not None else captured)
        expired = threading.Event()
        backstop = threading.Timer(limit + KILL_GRACE + 5, _expire, (channel, expired))  # if `timeout` did not
        started = time.monotonic()
        backstop.start()
        try:
            channel.exec_command(wrapped.line)
            exchange.run(stdin)
            status = channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._failed_channel(command, transport, exc) from None
        finally:
            backstop.cancel()
            channel.close()
        if expired.is_set() or (status in TIMED_OUT and time.monotonic() - started >= limit):
            raise CommandError(self.name, command, -1, f"timed out after {limit:g} s\n{exchange.stderr.text()}")
        return self._result(command, status, exchange, transport, captured)

    def _result(
        self, command: str, status: int, exchange: _Exchange, transport: paramiko.Transport, captured: io.BytesIO | None
    ) -> Result:
        stderr = exchange.stderr.text()
        if status == -1:
            if _transport_gone(transport):
                self._discard()
                raise ConnectError(self.name, f"connection lost during: {_short(command)}")
            raise CommandError(self.name, command, -1, f"ended without an exit status (killed by a signal?)\n{stderr}")
        if exchange.source_error is not None:
            sent = exchange.source_error
            raise CommandError(self.name, command, status, f"reading the data to send failed: {sent}\n{stderr}")
        if exchange.sink_error is not None:
            raise OperationError(f"{self.name}: writing the output of {_short(command)} failed: {exchange.sink_error}")
        if exchange.note:
            stderr += exchange.note
        out = captured.getvalue().decode(errors="replace") if captured is not None else ""
        return Result(command, status, out, stderr)

    def _failed_channel(self, command: str, transport: paramiko.Transport, exc: Exception) -> ConnectError:
        if _transport_gone(transport):
            self._discard()
            return ConnectError(self.name, f"connection lost during: {_short(command)}")
        return ConnectError(self.name, f"SSH channel failed: {exc or type(exc).__name__}")

    def check(self, command: str, **kwargs) -> Result:
        """Run a command and raise CommandError (command, status, output tail) unless it succeeds."""
        result = self.run(command, **kwargs)
        if not result.ok:
            raise CommandError(self.name, command, result.status, result.stdout + result.stderr)
        return result

    def put(
        self,
        data: bytes | Path,
        remote: str,
        *,
        mode: str = "0644",
        owner: str = "root",
        group: str = "root",
        sha256: str | None = None,
    ) -> None:
        """Write a file atomically through stdin (works with sudo; content never on a command line).

        The host renames the file into place only when exactly the expected size and sha256 arrived; a
        stream cut short fails (CommandError) and leaves the old file as it was. `sha256`, when the
        caller recorded it earlier (a cached artifact), is the one expected: a file changed since is refused.
        """
        size, digest = _measure(data) if sha256 is None or isinstance(data, bytes) else (data.stat().st_size, sha256)
        script = quote(_PUT_SCRIPT, remote, size, digest, owner, group, mode)
        with _source(data) as handle:
            self.check(script, stdin=_Limited(handle, size))

    def get(self, remote: str, local: Path, *, sha256: str | None = None) -> str:
        """Copy a remote file here, read with the same privileges as commands; returns its sha256.

        The bytes stream into a temporary file beside `local`, renamed into place only when complete and (with
        `sha256`) matching; otherwise `local` is left as it was and the temporary file removed.
        """
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".part")
        part = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                sink = _HashingWriter(handle)
                result = self.run(quote("cat -- %s", remote), stdout=sink)
            if not result.ok:
                raise CommandError(self.name, result.command, result.status, result.stderr)
            if sha256 and sink.hexdigest() != sha256.lower():
                raise OperationError(
                    f"{self.name}: {remote}: received {sink.size} bytes with sha256 {sink.hexdigest()}, "
                    f"expected {sha256}; {local} left as it was"
                )
            part.replace(local)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return sink.hexdigest()

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for conn in [self._conn, *reversed(self._hops)]:
            if conn is not None:
                conn.close()
        self._conn, self._hops = None, []

    def _discard(self) -> None:
        """Forget a dead connection, so that the next open() connects again."""
        self.close()


_PUT_SCRIPT = (
    "set -e; p=%s; size=%s; sum=%s; "
    'd=$(dirname "$p"); t=$(mktemp "$d/.lf.XXXXXX"); trap \'rm -f "$t"\' EXIT; trap "exit 1" HUP INT TERM PIPE; '
    'head -c "$size" > "$t"; n=$(wc -c < "$t"); '
    '[ "$n" -eq "$size" ] || { echo "upload cut short: $n of $size bytes arrived; $p left as it was" >&2; exit 1; }; '
    'got=$( (openssl dgst -sha256 -r 2>/dev/null || sha256sum) < "$t" | cut -d" " -f1); '
    '[ "$got" = "$sum" ] || { echo "upload damaged: sha256 $got, expected $sum; $p left as it was" >&2; exit 1; }; '
    'chown %s:%s "$t"; chmod %s "$t"; mv -fT "$t" "$p"; trap - EXIT'
)


def _measure(data: bytes | Path) -> tuple[int, str]:
    """Size and sha256 of what put() sends (a file is read once here, then again while sending)."""
    if isinstance(data, bytes):
        return len(data), hashlib.sha256(data).hexdigest()
    digest, size = hashlib.sha256(), 0
    with data.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@contextlib.contextmanager
def _source(data: bytes | Path) -> Iterator[BinaryIO]:
    if isinstance(data, bytes):
        yield io.BytesIO(data)
    else:
        with data.open("rb") as handle:
            yield handle


class _Limited:
    """Reads at most `size` bytes of `source` (a file that grew meanwhile does not overrun the upload)."""

    def __init__(self, source: BinaryIO, size: int) -> None:
        self.source, self.left = source, size

    def read(self, count: int) -> bytes:
        data = self.source.read(min(count, self.left)) if self.left else b""
        self.left -= len(data)
        return data


class _HashingWriter:
    """Writes to a file while counting and hashing what went through."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.size, self._digest = handle, 0, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _short(command: str, limit: int = 80) -> str:
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _expire(channel: paramiko.Channel, expired: threading.Event) -> None:
    expired.set()
    channel.close()


def _transport_gone(transport: paramiko.Transport) -> bool:
    """Whether the connection died (paramiko closes the channels a moment before it marks the transport)."""
    deadline = time.monotonic() + LOST_WAIT
    while transport.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- one command's streams -------------------------------------------------------------------------


class _Stderr:
    """Collects stderr; takes sudo's prompt marker (counted) and the command's ready marker out of it."""

    def __init__(self, prompt: bytes, ready: bytes) -> None:
        self.prompt, self.ready = prompt, ready
        self.markers = [m for m in (prompt, ready) if m]
        self.kept, self.pending = bytearray(), b""
        self.prompts, self.started, self.ended = 0, not ready, False
        self.changed = threading.Condition()

    def feed(self, data: bytes) -> None:
        with self.changed:
            if self.started:
                self.kept += data
                return
            self.pending += data
            self._scan()
            self.changed.notify_all()

    def _scan(self) -> None:
        while not self.started:
            hits = [(self.pending.find(m), m) for m in self.markers if m in self.pending]
            if not hits:
                break
            at, marker = min(hits)
            self.kept += self.pending[:at]
            self.pending = self.pending[at + len(marker) :]
            self.started = marker == self.ready
            self.prompts += marker == self.prompt
        hold = 0 if self.started else max(len(m) for m in self.markers) - 1  # a marker split across reads
        cut = max(0, len(self.pending) - hold)
        self.kept += self.pending[:cut]
        self.pending = self.pending[cut:]

    def end(self) -> None:
        with self.changed:
            self.kept += self.pending
            self.pending, self.ended = b"", True
            self.changed.notify_all()

    def wait(self, answered: int, timeout: float) -> tuple[int, bool, bool]:
        """(prompts seen, started, ended) once sudo asked again, the command started, or stderr ended."""
        with self.changed:
            self.changed.wait_for(lambda: self.started or self.ended or self.prompts > answered, timeout)
            return self.prompts, self.started, self.ended

    def text(self) -> str:
        with self.changed:
            return bytes(self.kept).decode(errors="replace")


class _Exchange:
    """One command's streams: stdin written from the caller's thread, stdout and stderr drained by two others."""

    def __init__(self, channel: paramiko.Channel, wrapped: _Wrapped, sink: BinaryIO) -> None:
        self.channel, self.wrapped, self.sink = channel, wrapped, sink
        self.stderr = _Stderr(wrapped.prompt, wrapped.ready)
        self.source_error: OSError | None = None
        self.sink_error: OSError | None = None
        self.note = ""

    def run(self, stdin: bytes | BinaryIO | None) -> None:
        readers = [
            threading.Thread(target=self._drain_stdout, daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for reader in readers:
            reader.start()
        if self._sudo_started():
            self._feed(stdin)
        with contextlib.suppress(OSError, EOFError):
            self.channel.shutdown_write()
        for reader in readers:
            reader.join()

    def _sudo_started(self) -> bool:
        """Whether the command runs: sudo got the password if (and only if) it asked for it, or needed none."""
        if not self.wrapped.password:
            return True
        answered = 0
        while True:
            prompts, started, ended = self.stderr.wait(answered, SUDO_WAIT)
            if started or ended:
                return started
            if prompts > answered and answered:  # asked again: wrong password; the end of stdin makes sudo stop
                return False
            if prompts == answered:
                self.note = f"\nsudo neither asked for the password nor started the command within {SUDO_WAIT} s"
                return False
            answered = prompts
            if not self._send(self.wrapped.password):
                return False

    def _feed(self, stdin: bytes | BinaryIO | None) -> None:
        if isinstance(stdin, bytes):
            self._send(stdin)
            return
        while stdin is not None:
            try:
                chunk = stdin.read(CHUNK)
            except OSError as exc:
                self.source_error = exc  # stop here: the host sees a short stream
                return
            if not chunk or not self._send(chunk):
                return

    def _send(self, data: bytes) -> bool:
        """False when the channel is closed (the command exited without reading it all, or the link died)."""
        try:
            self.channel.sendall(data)
        except (OSError, EOFError):
            return False
        return True

    def _drain_stdout(self) -> None:
        while data := _receive(self.channel.recv):
            if self.sink_error is None:
                try:
                    self.sink.write(data)
                except OSError as exc:
                    self.sink_error = exc  # keep draining, or the command would block on a full window

    def _drain_stderr(self) -> None:
        while data := _receive(self.channel.recv_stderr):
            self.stderr.feed(data)
        self.stderr.end()


def _receive(receive) -> bytes:
    try:
        return receive(CHUNK)
    except (OSError, EOFError):
        return b""
