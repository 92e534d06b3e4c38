"""A throwaway OpenSSH sshd on a loopback port, with its own host key and user key."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


@dataclass
class SshdServer:
    """A running sshd: where it listens and the files a client needs to reach it."""

    port: int
    key: Path
    known_hosts: Path
    host_key_pub: Path
    process: subprocess.Popen
    log: Path

    def inventory_text(self, extra_host_vars: str = "") -> str:
        return (
            "all:\n  vars:\n"
            f"    ansible_user: root\n    ansible_port: {self.port}\n"
            f"    ansible_ssh_private_key_file: {self.key}\n    known_hosts_file: {self.known_hosts}\n"
            "  children:\n    head:\n      hosts:\n"
            f"        local: {{ansible_host: 127.0.0.1{extra_host_vars}}}\n"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def ensure_sshd() -> None:
    """Install openssh-server when the machine has no sshd binary."""
    if Path(SSHD).exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "openssh-server"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start(workdir: Path) -> SshdServer:
    """Start sshd on 127.0.0.1:<free port>; returns once it accepts connections."""
    ensure_sshd()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, user_key = workdir / "host_key", workdir / "user_key"
    keygen(host_key)
    keygen(user_key)
    authorized = workdir / "authorized_keys"
    shutil.copy(user_key.with_suffix(".pub"), authorized)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nListenAddress 127.0.0.2\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized} .ssh/authorized_keys\n"
        f"PidFile {workdir / 'sshd.pid'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxSessions 50\nMaxStartups 50\n"
    )
    known = workdir / "known_hosts"
    host_pub = host_key.with_suffix(".pub").read_text().split()
    # Two loopback addresses, so tests can have two "hosts" served by this one sshd.
    known.write_text("".join(f"[{ip}]:{port} {host_pub[0]} {host_pub[1]}\n" for ip in ("127.0.0.1", "127.0.0.2")))
    log = workdir / "sshd.log"
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = SshdServer(port, user_key, known, host_key.with_suffix(".pub"), process, log)
    _wait_listening(server)
    return server


def _wait_listening(server: SshdServer, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd exited: {server.log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"sshd did not listen on port {server.port} within {timeout} s")
