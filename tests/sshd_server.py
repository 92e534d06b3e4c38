"""A throwaway OpenSSH sshd on a loopback port, with its own host key and user key."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
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

    def write_inventory(self, path: Path, **all_vars: object) -> Path:
        """hosts.yml with host `local` (127.0.0.1) in head; keyword arguments add to or replace the vars of all."""
        values = {
            "ansible_user": "root",
            "ansible_port": self.port,
            "ansible_ssh_private_key_file": str(self.key),
            "known_hosts_file": str(self.known_hosts),
            **all_vars,
        }
        lines = ["all:", "  vars:", *(f"    {k}: {json.dumps(v)}" for k, v in values.items())]
        lines += ["  children:", "    head:", "      hosts:", "        local: {ansible_host: 127.0.0.1}"]
        path.write_text("\n".join(lines) + "\n")
        return path

    def write_jump_inventory(self, path: Path, known_hosts: Path, common_args: str = "-o ProxyJump={jump}") -> Path:
        """hosts.yml whose host `local` (127.0.0.1) is reached through a jump host: this sshd on 127.0.0.2.

        `common_args` is ansible_ssh_common_args, `{jump}` standing for the jump host's address and port.
        """
        common = common_args.format(jump=f"127.0.0.2:{self.port}")
        return self.write_inventory(path, known_hosts_file=str(known_hosts), ansible_ssh_common_args=common)

    def host_key_line(self, name: str) -> str:
        """A known_hosts line pinning this sshd's host key for `name` ("[127.0.0.1]:PORT")."""
        kind, key = self.host_key_pub.read_text().split()[:2]
        return f"{name} {kind} {key}\n"

    def kill_session(self, client_port: int) -> list[int]:
        """SIGKILL the sshd processes serving the connection from local `client_port`; returns their pids.

        Only children of this test sshd are killed, found by their socket (ss -tnp), never by name.
        """
        listing = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{self.port} and dport = :{client_port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pids = sorted({int(pid) for pid in re.findall(r"pid=(\d+)", listing)})
        ours = [pid for pid in pids if self.process.pid in _ancestors(pid)]
        for pid in ours:
            os.kill(pid, signal.SIGKILL)
        return ours

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


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        found.append(pid)
    return found


def add_sudo_user(name: str, public_key: Path, *, nopasswd: bool) -> str:
    """A login user holding the test key who may run anything as root with sudo; returns its password.

    With `nopasswd` sudo never asks for the password (a NOPASSWD rule); otherwise it always does.
    """
    ensure_sudo()
    remove_user(name)  # left by a killed run
    password = secrets.token_urlsafe(12)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    ssh_dir = Path(f"/home/{name}/.ssh")
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(public_key, ssh_dir / "authorized_keys")
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        shutil.chown(path, name, name)
    rule = f"{name} ALL=(ALL) NOPASSWD: ALL\n" if nopasswd else f"{name} ALL=(ALL) ALL\n"
    sudoers = Path(f"/etc/sudoers.d/{name}")
    sudoers.write_text(rule)
    sudoers.chmod(0o440)
    return password


def remove_user(name: str) -> None:
    """Remove a user made by add_sudo_user, with its home and sudoers file (no error when absent)."""
    Path(f"/etc/sudoers.d/{name}").unlink(missing_ok=True)
    subprocess.run(["userdel", "--force", "--remove", name], check=False, stderr=subprocess.DEVNULL)


def ensure_sudo() -> None:
    """Install sudo when the machine has none."""
    if shutil.which("sudo"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "sudo"], check=True, env=env, stdout=subprocess.DEVNULL)


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
