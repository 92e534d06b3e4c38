"""SSH to one host through Fabric, with host keys checked and commands that keep secrets off argv."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko
from fabric import Config, Connection

from . import hostscripts, openssh
from .channel import CHUNK, Exchange, HashingWriter, Limited, Ranges, Wrapped
from .connvars import Hop
from .errors import CommandError, ConnectError, LlamafleetError, OperationError
from .facts import batch_script, from_command, split_batch
from .inventory import Host
from .known_hosts import HostKeyPolicy, KnownHosts, changed_key_message, read_known_hosts
from .operations.base import Transfer
from .rolesettings import build, knob
from .shell import quote

KILL_GRACE = 10  # seconds between the TERM and the KILL that end a command past its time limit
TIMED_OUT = (124, 137)  # what `timeout` exits with when it stopped the command (TERM, then KILL)
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


def _fabric_config() -> Config:
    """Fabric settings from our arguments only: no ~/.ssh/config, /etc/ssh/ssh_config or fabric.yml is read,
    so nothing outside the inventory changes the host, port, user, identity or jump hosts."""
    return Config(lazy=True, ssh_config=paramiko.SSHConfig())


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a host's SSH connection and authentication, and for one remote command."""

    connect_timeout: int = knob(variable="ssh_connect_timeout")
    command_timeout: int = knob(variable="ssh_command_timeout")


class HostConnection:
    """One SSH connection to a host, opened lazily and reused for every command of a run."""

    def __init__(self, host: Host, *, accept_new_host_keys: bool = False, base_dir: Path | None = None) -> None:
        self.host = host
        self.name = host.name
        self.settings = host.connection
        self.accept_new = accept_new_host_keys
        self.base_dir = base_dir or Path.cwd()
        timeouts = build(Timeouts, host)
        self.connect_timeout, self.command_timeout = timeouts.connect_timeout, timeouts.command_timeout
        self._conn: Connection | None = None
        self._hops: list[Connection] = []
        self.static_facts: dict[tuple, object] = {}  # facts nothing we apply changes (the OS), read once
        # Fact command -> its output, read since llamafleet last changed the host: the process's runs share them.
        self.fact_outputs: dict[str, list[str]] = {}
        self.asked: dict[str, None] = {}  # the command of every fact the process's runs asked for here, in order
        self.ahead_trips = 0  # round trips read_ahead() made, not yet counted by a run
        self._ahead: threading.Thread | None = None
        self._ahead_error: Exception | None = None
        self._abandoned = False
        self._lock = threading.Lock()
        self._bulk: openssh.Client | None = None
        # Why bulk data takes paramiko on this host (None: the ssh program carries it, once it is tried).
        self.bulk_fallback: str | None = openssh.unusable(
            [*self.settings.jumps, self._target], bool(self.settings.password)
        )

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def known_hosts(self) -> Path:
        return self._path(self.settings.known_hosts)

    @property
    def reaches(self) -> tuple:
        """Everything that decides how the host is reached; two connections with equal ones may be one.

        It holds the known_hosts file's version: changed since (a lab made again, a key revoked), its
        keys are checked anew on a new connection.
        """
        base = self.base_dir.resolve()
        timeouts = (self.connect_timeout, self.command_timeout)
        return (self.name, self.settings, timeouts, self.accept_new, base, _file_version(self.known_hosts))

    @property
    def user(self) -> str:
        return self.settings.user

    @property
    def become(self) -> bool:
        return self.settings.become and self.user != self.settings.become_user

    def read_ahead(self, commands: list[str], slots: threading.Semaphore) -> None:
        """Connect and read these fact commands' output in one round trip, in the background, before any run asks.

        Once per connection; it starts once it holds one of `slots` (--forks). Whatever then uses the connection
        waits for it first (`caught_up`); the outputs serve the runs' facts as any fact read ahead does (until the
        host changes). What it failed with (no connection, the batch's own failure) is raised there, once.
        """
        if self._ahead is not None or not commands:
            return
        self.ahead_trips += 1
        self._ahead = threading.Thread(
            target=self._read, args=(commands, slots), name=f"ahead-{self.name}", daemon=True
        )
        self._ahead.start()

    def _read(self, commands: list[str], slots: threading.Semaphore) -> None:
        facts = [from_command(command) for command in dict.fromkeys(commands)]
        script, token = batch_script(facts)
        try:
            with slots:
                result = self.run(script)
            try:
                outputs = split_batch(facts, result.stdout, token)
            except ValueError as exc:
                raise CommandError(self.name, "gather facts", result.status, f"{exc}\n{result.stderr}") from None
            self.fact_outputs.update({fact.command(): lines for fact, lines in outputs})
        except Exception as exc:  # noqa: BLE001 - raised to the first caller, as the run's own first batch would
            self._ahead_error = exc
        finally:
            if self._abandoned:
                self.close()

    def caught_up(self) -> None:
        """Wait for the read ahead, if one runs; the error it met is raised here, to its first caller."""
        ahead = self._ahead
        if ahead is None or ahead is threading.current_thread():
            return
        ahead.join()
        with self._lock:
            error, self._ahead_error = self._ahead_error, None
        if error is not None:
            raise error

    def open(self) -> Connection:
        self.caught_up()
        with self._lock:
            if self._conn is not None and not self._conn.is_connected:
                self._close_all()  # dropped while idle: no command was running, so connect again
            if self._conn is None:
                self._conn = self._connect()
            return self._conn

    @property
    def _target(self) -> Hop:
        return Hop(self.settings.address, self.settings.port, self.user)

    def _connect(self) -> Connection:
        gateway: Connection | None = None
        try:
            for hop in self.settings.jumps:
                gateway = self._open(hop, gateway, jump=True)
                self._hops.append(gateway)
            return self._open(self._target, gateway, jump=False)
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
        conn.client.set_missing_host_key_policy(HostKeyPolicy(self.name, label, known, self.accept_new))
        self._handshake(conn, where, label, known, via=self.settings.jumps[-1] if gateway else None)
        conn.transport.set_keepalive(15)
        return conn

    def _socket(self, where: Hop) -> socket.socket:
        """The TCP connection to a host reached directly, without Nagle's algorithm.

        SSH messages here are small and each waits for its answer: Nagle's algorithm with the peer's
        delayed ACK would hold every one back about 40 ms (measured: 50 ms a command, 7 ms without).
        """
        sock = socket.create_connection((where.host, where.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _known(self, where: Hop, label: str) -> KnownHosts:
        try:
            return read_known_hosts(self.known_hosts, where.key_name)
        except ValueError as exc:
            raise ConnectError(self.name, f"{label}{exc}") from None

    def _handshake(self, conn: Connection, where: Hop, label: str, known: KnownHosts, via: Hop | None) -> None:
        try:
            if via is None:
                conn.connect_kwargs["sock"] = self._socket(where)
            conn.open()
        except ConnectError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise ConnectError(self.name, label + changed_key_message(exc, where.key_name, known)) from None
        except paramiko.AuthenticationException as exc:
            user = conn.user
            raise ConnectError(self.name, f"{label}SSH authentication as {user} failed: {exc}") from None
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
            through = f" through jump host {via.key_name}" if via else ""
            where_ = f"{where.host}:{where.port}{through}"
            raise ConnectError(self.name, f"{label}cannot connect to {where_}: {exc or type(exc).__name__}") from None

    def _wrap(self, command: str, limit: float, *, announce: bool = False) -> Wrapped:
        """The command line to send: stopped on the host at `limit` (`timeout`), under sudo when becoming.

        With a sudo password (or `announce`), the command announces itself on stderr with a random marker
        before it reads its stdin, and sudo prompts with another: the password is written only after the
        prompt, so it never reaches the command's stdin, and data only once the command runs.
        """
        bounded = quote("timeout -k %s %s sh -c %s", KILL_GRACE, f"{limit:g}", command)
        password = self.settings.become_password if self.become else None
        if not (password or announce):
            return (
                Wrapped(quote("sudo -H -n -u %s -- ", self.settings.become_user) + bounded)
                if self.become
                else Wrapped(bounded)
            )
        token = secrets.token_hex(12)
        prompt, ready = f"[llamafleet sudo {token}]", f"[llamafleet started {token}]"
        starter = quote("printf '%%s\\n' %s >&2; exec ", ready) + bounded
        if not self.become:
            return Wrapped(starter, ready=f"{ready}\n".encode())
        if not password:
            line = quote("sudo -H -n -u %s -- sh -c %s", self.settings.become_user, starter)
            return Wrapped(line, ready=f"{ready}\n".encode())
        line = quote("sudo -H -S -p %s -u %s -- sh -c %s", prompt, self.settings.become_user, starter)
        return Wrapped(line, f"{password}\n".encode(), prompt.encode(), f"{ready}\n".encode())

    def run(
        self,
        command: str,
        *,
        stdin: bytes | BinaryIO | None = None,
        timeout: float | None = None,
        stdout: BinaryIO | None = None,
        on_sent: Callable[[int], None] | None = None,
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
        exchange = Exchange(channel, wrapped, stdout if stdout is not None else captured, on_sent)
        deadline = _Deadline(limit, channel.close)
        try:
            with deadline:
                channel.exec_command(wrapped.line)
                exchange.run(stdin)
                status = channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._failed_channel(command, transport, exc) from None
        finally:
            channel.close()
        no_status = functools.partial(self._no_status, command, status, transport)
        stderr = self._ending(command, status, exchange, deadline, no_status)
        if exchange.sink_error is not None:
            raise OperationError(f"{self.name}: writing the output of {_short(command)} failed: {exchange.sink_error}")
        out = captured.getvalue().decode(errors="replace") if captured is not None else ""
        return Result(command, status, out, stderr + exchange.note)

    def _ending(
        self,
        command: str,
        status: int,
        exchange: Exchange,
        deadline: _Deadline,
        no_status: Callable[[str], LlamafleetError | None],
    ) -> str:
        """The stderr of a command that ended, once the checks run() and stream() share have passed.

        In this order: out of time; the command's own status never came (`no_status(stderr)` returns the error
        to raise, or None when it came); the data to send could not be read.
        """
        stderr = exchange.stderr.text()
        if deadline.passed(status):
            raise CommandError(self.name, command, -1, f"timed out after {deadline.limit:g} s\n{stderr}")
        error = no_status(stderr)
        if error is not None:
            raise error
        if exchange.source_error is not None:
            sent = exchange.source_error
            raise CommandError(self.name, command, status, f"reading the data to send failed: {sent}\n{stderr}")
        return stderr

    def _no_status(
        self, command: str, status: int, transport: paramiko.Transport, stderr: str
    ) -> LlamafleetError | None:
        """Why a channel closed without the command's exit status (-1): the connection died, or a signal."""
        if status != -1:
            return None
        if _transport_gone(transport):
            self._discard()
            return ConnectError(self.name, f"connection lost during: {_short(command)}")
        return CommandError(self.name, command, -1, f"ended without an exit status (killed by a signal?)\n{stderr}")

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

        The host hashes the bytes as they arrive and renames the file into place only when exactly the expected
        size and sha256 arrived; a stream cut short fails (CommandError) and leaves the old file as it was.
        `sha256`, when the caller recorded it earlier (a cached artifact), is the one expected: a file changed
        since is refused.
        """
        size, digest = _measure(data) if sha256 is None or isinstance(data, bytes) else (data.stat().st_size, sha256)
        script = hostscripts.put(remote, size, digest, owner, group, mode)
        with _source(data) as handle:
            source = Limited(handle, size)
            self.stream(script, source) if isinstance(data, Path) else self.check(script, stdin=source)

    def put_resumable(self, transfer: Transfer, on_sent: Callable[[int], None] | None = None) -> None:
        """Send a large controller file whose sha256 is known, resuming a partial copy left by an earlier run.

        The bytes go to `transfer.partial` (beside the target, same filesystem) from `transfer.offset` on; the
        host hashes them as they arrive (what arrived earlier is read once more, from its own disk), then fsyncs,
        sets owner and mode, renames into place and records the sha256 under the file's size, mtime, inode and
        ctime. Cut short, the part stays to be resumed; damaged, it is removed; the target is never touched.
        """
        t = transfer
        script = hostscripts.resumable(t)
        with t.source.open("rb") as handle:
            handle.seek(t.offset)
            self.stream(script, Limited(handle, t.size - t.offset), on_sent)

    def feed(
        self,
        command: str,
        source: Path,
        ranges: tuple[tuple[int, int], ...],
        on_sent: Callable[[int], None] | None = None,
    ) -> Result:
        """Run a command whose stdin is the given (offset, size) ranges of a controller file, one after another."""
        with source.open("rb") as handle:
            return self.stream(command, Ranges(handle, ranges), on_sent)

    def stream(self, command: str, stdin: BinaryIO, on_sent: Callable[[int], None] | None = None) -> Result:
        """check() for a command fed a large stream: carried by the ssh program where it can, else by paramiko.

        ssh is pinned to the host keys this connection verified and runs the same wrapped line (timeout, sudo);
        the data starts only once the command announced itself, so when ssh cannot connect or log in, nothing
        was read yet and paramiko carries the stream instead (`bulk_fallback` says why, for later streams too).
        """
        client = self._bulk_client()
        if client is None:
            return self.check(command, stdin=stdin, on_sent=on_sent)
        wrapped = self._wrap(command, self.command_timeout, announce=True)
        stream = openssh.Stream(client.argv(wrapped.line))
        exchange = Exchange(stream, wrapped, io.BytesIO(), on_sent)
        deadline = _Deadline(self.command_timeout, stream.kill)
        try:
            with deadline:
                exchange.run(stdin)
                status = stream.wait()
        finally:
            stream.close()
        if status == openssh.FAILED and not exchange.stderr.started:
            self.bulk_fallback = f"ssh could not run the command: {_short(exchange.stderr.text().strip(), 200)}"
            return self.check(command, stdin=stdin, on_sent=on_sent)
        stderr = self._ending(command, status, exchange, deadline, functools.partial(self._ssh_lost, command, status))
        if status != 0:
            raise CommandError(self.name, command, status, stderr + exchange.note)
        return Result(command, status, "", stderr)

    def _ssh_lost(self, command: str, status: int, stderr: str) -> ConnectError | None:
        """ssh's own failure (255) once the command had started: the connection was lost."""
        if status != openssh.FAILED:
            return None
        return ConnectError(self.name, f"connection lost during: {_short(command)} ({_short(stderr.strip(), 200)})")

    def _bulk_client(self) -> openssh.Client | None:
        """The ssh client of this connection (made once it is open and its keys verified), or None."""
        if self.bulk_fallback is not None:
            return None
        conn = self.open()
        with self._lock:
            if self._bulk is None:
                pinned = [
                    openssh.Pinned(hop, c.transport.get_remote_server_key())
                    for hop, c in zip((*self.settings.jumps, self._target), (*self._hops, conn), strict=True)
                ]
                key = self._path(self.settings.key_file) if self.settings.key_file else None
                self._bulk = openssh.Client(pinned[-1], pinned[:-1], key, self.connect_timeout)
            return self._bulk

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
                sink = HashingWriter(handle)
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
        ahead = self._ahead
        if ahead is not None and ahead.is_alive() and ahead is not threading.current_thread():
            self._abandoned = True  # it closes the connection when it ends; a process that exits does not wait
            return
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for conn in [self._conn, *reversed(self._hops)]:
            if conn is not None:
                conn.close()
        if self._bulk is not None:
            self._bulk.close()
        self._conn, self._hops, self._bulk = None, [], None

    def _discard(self) -> None:
        """Forget a dead connection, so that the next open() connects again."""
        self.close()


class ConnectionPool:
    """The SSH connections of one process, so that the tasks of one command line (`invoke provision
    deploy ...`) reach each host over the same connection: one handshake and one read of the host's
    static facts, not one per task. A host is the same only if everything that reaches it is
    (address, user, keys, known_hosts, jump hosts, sudo, time limits, whether new host keys are accepted).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple, HostConnection] = {}
        # Where the facts this process asked for are kept for the next process of the same command line
        # (set by the first read_ahead; see runner.read_ahead).
        self.memory: Path | None = None

    def connection(self, host: Host, *, accept_new_host_keys: bool, base_dir: Path) -> HostConnection:
        candidate = HostConnection(host, accept_new_host_keys=accept_new_host_keys, base_dir=base_dir)  # not opened yet
        with self._lock:
            return self._open.setdefault(candidate.reaches, candidate)

    def asked(self) -> dict[str, list[str]]:
        """host -> the commands of the facts this process's runs asked for there."""
        with self._lock:
            connections = list(self._open.values())
        return {conn.name: list(conn.asked) for conn in connections if conn.asked}

    def close(self) -> None:
        with self._lock:
            connections, self._open = list(self._open.values()), {}
        for conn in connections:
            conn.close()


def _file_version(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


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


def _short(command: str, limit: int = 80) -> str:
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Deadline:
    """A command's time limit: `timeout` on the host stops it at `limit`; should that fail, the backstop here
    calls `stop` (closes the channel, kills ssh) KILL_GRACE + 5 s later."""

    def __init__(self, limit: float, stop: Callable[[], None]) -> None:
        self.limit = limit
        self.fired = threading.Event()
        self._timer = threading.Timer(limit + KILL_GRACE + 5, self._stop, (stop,))
        self._started = 0.0

    def __enter__(self) -> _Deadline:
        self._started = time.monotonic()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _stop(self, stop: Callable[[], None]) -> None:
        self.fired.set()
        stop()

    def passed(self, status: int) -> bool:
        """Whether the command was stopped for its time: by the backstop, or by `timeout` (its exit status)."""
        return self.fired.is_set() or (status in TIMED_OUT and time.monotonic() - self._started >= self.limit)


def _transport_gone(transport: paramiko.Transport) -> bool:
    """Whether the connection died (paramiko closes the channels a moment before it marks the transport)."""
    deadline = time.monotonic() + LOST_WAIT
    while transport.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
