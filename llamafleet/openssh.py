"""Bulk streams through the OpenSSH client, pinned to the host keys the engine's own connection verified.

paramiko moves data at about half the speed of the SSH channel (its packet layer is Python), so large
transfers (models, seeded cache entries) go through `ssh` when it is installed. Nothing of the user's
ssh configuration is read: the client gets a generated config and a known_hosts file holding exactly the
keys paramiko checked on this run (the target's and every jump host's), strict checking on, batch mode
(no prompt). Commands are the same wrapped lines as every other command (`timeout`, sudo), so privilege
and time limits take the one path.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko

from .connvars import Hop
from .errors import UsageError

SSH = "ssh"
FAILED = 255  # what ssh exits with when it could not connect, log in or keep the connection
ALIVE_INTERVAL, ALIVE_COUNT = 5, 3  # a cut link ends the stream within about 15 s
# The bulk path's choice, for tests and for users who need the old path: auto (ssh when usable) or paramiko.
BULK_ENV = "LLAMAFLEET_SSH_BULK"
BULK_CHOICES = ("auto", "paramiko")
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com")
_PLAIN_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # what a `Host` line of ssh's configuration matches
# OpenSSH's names of the signature algorithms of a host key type (an RSA key is used as rsa-sha2-*).
_ALGORITHMS = {"ssh-rsa": "rsa-sha2-512,rsa-sha2-256,ssh-rsa"}


@dataclass(frozen=True)
class Pinned:
    """One endpoint as ssh will name it, with the host key verified for it on this run."""

    hop: Hop
    key: paramiko.PKey

    def known_hosts_line(self) -> str:
        return f"{self.hop.key_name} {self.key.get_name()} {self.key.get_base64()}\n"

    @property
    def algorithms(self) -> str:
        return _ALGORITHMS.get(self.key.get_name(), self.key.get_name())


def unusable(hops: list[Hop], password: bool) -> str | None:
    """Why ssh cannot carry this host's bulk data (None: it can)."""
    choice = os.environ.get(BULK_ENV) or "auto"  # empty: unset, as for the other LLAMAFLEET_ variables
    if choice not in BULK_CHOICES:
        raise UsageError(f"{BULK_ENV}={choice!r}: not one of {', '.join(BULK_CHOICES)}")
    if choice == "paramiko":
        return f"{BULK_ENV}=paramiko"
    if password:
        return "password authentication (ssh runs in batch mode)"
    if shutil.which(SSH) is None:
        return "no ssh program on the controller"
    if not all(_PLAIN_HOST.fullmatch(hop.host) for hop in hops):
        return "a host address ssh's configuration cannot match (IPv6?)"
    return None


class Client:
    """The files that make ssh connect exactly as the engine does: config and pinned known_hosts, private."""

    def __init__(self, target: Pinned, jumps: list[Pinned], key_file: Path | None, connect_timeout: int) -> None:
        self.target, self.jumps = target, jumps
        self.folder = Path(tempfile.mkdtemp(prefix="llamafleet-ssh-"))  # 0700
        known = self.folder / "known_hosts"
        known.write_text("".join(p.known_hosts_line() for p in (*jumps, target)))
        lines = [
            "Host *",
            f"  UserKnownHostsFile {_config_word(known)}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  UpdateHostKeys no",
            "  CheckHostIP no",
            "  BatchMode yes",
            f"  ConnectTimeout {connect_timeout}",
            f"  ServerAliveInterval {ALIVE_INTERVAL}",
            f"  ServerAliveCountMax {ALIVE_COUNT}",
            "  ControlMaster no",
            "  ControlPath none",
            "  ForwardAgent no",
            "  ForwardX11 no",
            "  ClearAllForwardings yes",
            "  PermitLocalCommand no",
            "  LogLevel ERROR",
        ]
        if _has_aes_instructions():
            # AES-GCM with AES instructions costs about half the CPU of OpenSSH's default ChaCha20-Poly1305,
            # which on a busy controller is what limits a model transfer (all three are authenticated ciphers).
            lines.append(f"  Ciphers {','.join(FAST_CIPHERS)}")
        if key_file is not None:
            lines += [f"  IdentityFile {_config_word(key_file)}", "  IdentitiesOnly yes"]
        # Each endpoint negotiates the key type that was verified for it (no other key is in known_hosts).
        for pinned in (*jumps, target):
            lines[0:0] = [f"Host {pinned.hop.host}", f"  HostKeyAlgorithms {pinned.algorithms}"]
        self.config = self.folder / "config"
        self.config.write_text("\n".join(lines) + "\n")

    def argv(self, line: str) -> list[str]:
        """ssh's arguments for running `line` on the target (every inventory value behind its option)."""
        t = self.target.hop
        argv = [SSH, "-F", str(self.config), "-T", "-p", str(t.port), "-l", t.user]
        if self.jumps:
            # A hop without a user logs in as the local user, as the engine's connection does.
            hops = (f"{j.hop.user + '@' if j.hop.user else ''}{j.hop.host}:{j.hop.port}" for j in self.jumps)
            argv += ["-J", ",".join(hops)]
        return [*argv, "--", t.host, line]

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Stream:
    """A running ssh process with the methods of a paramiko channel that channel.Exchange uses."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        self._lock = threading.Lock()

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.process.stdin.fileno(), view)
            view = view[written:]

    def send_file(self, handle: BinaryIO, offset: int, size: int) -> int:
        """Send `size` bytes of a file from `offset` (sendfile(2): page cache to pipe); returns what was sent."""
        sent, out, source = 0, self.process.stdin.fileno(), handle.fileno()
        while sent < size:
            done = os.sendfile(out, source, offset + sent, size - sent)
            if done == 0:
                break  # the file is shorter than the range
            sent += done
        return sent

    def recv(self, count: int) -> bytes:
        return os.read(self.process.stdout.fileno(), count)

    def recv_stderr(self, count: int) -> bytes:
        return os.read(self.process.stderr.fileno(), count)

    def shutdown_write(self) -> None:
        with self._lock:
            if not self.process.stdin.closed:
                self.process.stdin.close()

    def wait(self) -> int:
        return self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def close(self) -> None:
        self.shutdown_write()
        self.kill()
        self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            pipe.close()


def _config_word(path: Path) -> str:
    """A path as one ssh_config argument (quoted: a folder name may hold spaces)."""
    text = str(path)
    if '"' in text or "\n" in text:
        raise ValueError(f"{text}: a path ssh's configuration cannot hold")
    return f'"{text}"'


@functools.lru_cache(maxsize=1)
def _has_aes_instructions(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this machine's CPU has AES instructions (x86 `aes`, Arm `aes` feature)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(
        line.split(":", 1)[0].strip() in ("flags", "Features") and "aes" in line.split(":", 1)[1].split()
        for line in text.splitlines()
        if ":" in line
    )
