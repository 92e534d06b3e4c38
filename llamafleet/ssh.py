"""SSH to one host through Fabric, with host keys checked and commands that keep secrets off argv."""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko
from fabric import Connection

from .errors import CommandError, ConnectError
from .inventory import Host

CHUNK = 1 << 18


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


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise ConnectError(
            hostname,
            f"unknown SSH host key ({key.get_name()} {key.fingerprint}) not in {self.known_hosts}; "
            "check it, then add it to that file or rerun with --accept-new-host-keys",
        )


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use: record a new host's key in known_hosts; a changed key still fails."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with _KNOWN_HOSTS_LOCK, self.known_hosts.open("a") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


_KNOWN_HOSTS_LOCK = threading.Lock()


class HostConnection:
    """One SSH connection to a host, opened lazily and reused for every command of a run."""

    def __init__(self, host: Host, *, accept_new_host_keys: bool = False, base_dir: Path | None = None) -> None:
        self.host = host
        self.name = host.name
        self.accept_new = accept_new_host_keys
        self.base_dir = base_dir or Path.cwd()
        self.connect_timeout = int(host.vars.get("ssh_connect_timeout") or 10)
        self.command_timeout = int(host.vars.get("ssh_command_timeout") or 3600)
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def known_hosts(self) -> Path:
        return self._path(str(self.host.vars.get("known_hosts_file") or "~/.ssh/known_hosts"))

    @property
    def user(self) -> str:
        return str(self.host.vars.get("ansible_user") or "root")

    @property
    def become(self) -> bool:
        wanted = bool(self.host.vars.get("ansible_become"))
        target = str(self.host.vars.get("ansible_become_user") or "root")
        return wanted and self.user != target

    def open(self) -> Connection:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            return self._conn

    def _connect(self) -> Connection:
        v = self.host.vars
        kwargs: dict = {"banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout}
        if v.get("ansible_ssh_private_key_file"):
            kwargs["key_filename"] = str(self._path(str(v["ansible_ssh_private_key_file"])))
        if v.get("ansible_password"):
            kwargs["password"] = str(v["ansible_password"])
        conn = Connection(
            self.host.address,
            user=self.user,
            port=self.host.port,
            connect_timeout=self.connect_timeout,
            connect_kwargs=kwargs,
        )
        self._pin_host_keys(conn.client)
        try:
            conn.open()
        except ConnectError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise ConnectError(self.name, self._changed_key_message(exc)) from None
        except paramiko.AuthenticationException as exc:
            raise ConnectError(self.name, f"SSH authentication as {self.user} failed: {exc}") from None
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            where = f"{self.host.address}:{self.host.port}"
            raise ConnectError(self.name, f"cannot connect to {where}: {exc or type(exc).__name__}") from None
        conn.transport.set_keepalive(15)
        return conn

    def _pin_host_keys(self, client: paramiko.SSHClient) -> None:
        if self.known_hosts.is_file():
            try:
                client.load_host_keys(str(self.known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise ConnectError(self.name, f"cannot read known_hosts {self.known_hosts}: {exc}") from None
        # load_host_keys() would make paramiko rewrite the file on save; we append ourselves.
        client._host_keys_filename = None
        policy = _AcceptNew if self.accept_new else _RejectUnknown
        client.set_missing_host_key_policy(policy(self.known_hosts))

    def _changed_key_message(self, exc: paramiko.BadHostKeyException) -> str:
        entry = self.host.address if self.host.port == 22 else f"[{self.host.address}]:{self.host.port}"
        return (
            f"SSH host key CHANGED (now {exc.key.get_name()} {exc.key.fingerprint}, "
            f"{self.known_hosts} has {exc.expected_key.fingerprint}); refusing to connect. If the host was "
            f"reinstalled: ssh-keygen -R {shlex.quote(entry)} -f {shlex.quote(str(self.known_hosts))}"
        )

    def _wrap(self, command: str) -> tuple[str, bytes]:
        """The command line to send and what to write first on stdin (the sudo password)."""
        if not self.become:
            return command, b""
        target = str(self.host.vars.get("ansible_become_user") or "root")
        password = self.host.vars.get("ansible_become_password")
        if password:
            return quote("sudo -H -S -p '' -u %s -- sh -c %s", target, command), f"{password}\n".encode()
        return quote("sudo -H -n -u %s -- sh -c %s", target, command), b""

    def run(self, command: str, *, stdin: bytes | BinaryIO | None = None, timeout: float | None = None) -> Result:
        """Run a shell command (as root when ansible_become); never raises on a non-zero status."""
        line, preamble = self._wrap(command)
        transport = self.open().transport
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectError(self.name, f"SSH session failed: {exc}") from None
        limit = timeout or self.command_timeout
        timer = threading.Timer(limit, channel.close)
        timer.start()
        try:
            channel.exec_command(line)
            stdout, stderr = _exchange(channel, preamble, stdin)
            status = channel.recv_exit_status()
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectError(self.name, f"SSH channel failed: {exc}") from None
        finally:
            timed_out = not timer.is_alive()
            timer.cancel()
            channel.close()
        if timed_out or status == -1:
            raise CommandError(self.name, command, -1, f"timed out after {limit:.0f} s\n{stderr}")
        return Result(command, status, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def check(self, command: str, **kwargs) -> Result:
        """Run a command and raise CommandError (command, status, output tail) unless it succeeds."""
        result = self.run(command, **kwargs)
        if not result.ok:
            raise CommandError(self.name, command, result.status, result.stdout + result.stderr)
        return result

    def put(
        self, data: bytes | Path, remote: str, *, mode: str = "0644", owner: str = "root", group: str = "root"
    ) -> None:
        """Write a file atomically through stdin (works with sudo; content never on a command line)."""
        script = quote(
            'set -e; d=$(dirname %s); t=$(mktemp "$d/.lf.XXXXXX"); trap \'rm -f "$t"\' EXIT; '
            'cat > "$t"; chown %s:%s "$t"; chmod %s "$t"; mv -fT "$t" %s; trap - EXIT',
            remote,
            owner,
            group,
            mode,
            remote,
        )
        if isinstance(data, Path):
            with data.open("rb") as handle:
                self.check(script, stdin=handle)
        else:
            self.check(script, stdin=data)

    def get(self, remote: str, local: Path) -> None:
        """Copy a remote file to the controller (through SFTP)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        self.open().get(remote, str(local))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _exchange(channel: paramiko.Channel, preamble: bytes, stdin: bytes | BinaryIO | None) -> tuple[bytes, bytes]:
    """Feed stdin and drain stdout/stderr at the same time (so neither side can block)."""
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(channel.recv_stderr, err_chunks), daemon=True)
    reader.start()
    out_chunks: list[bytes] = []
    out_reader = threading.Thread(target=_drain, args=(channel.recv, out_chunks), daemon=True)
    out_reader.start()
    if preamble:
        channel.sendall(preamble)
    if isinstance(stdin, bytes):
        channel.sendall(stdin)
    elif stdin is not None:
        while chunk := stdin.read(CHUNK):
            channel.sendall(chunk)
    channel.shutdown_write()
    out_reader.join()
    reader.join()
    return b"".join(out_chunks), b"".join(err_chunks)


def _drain(receive, chunks: list[bytes]) -> None:
    while True:
        try:
            data = receive(CHUNK)
        except (OSError, EOFError):
            return
        if not data:
            return
        chunks.append(data)
