"""One lab host: its overlay root, identity files and keys, its nspawn boot, readiness, poweroff and stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import jinja2

from . import cgroups
from .mounts import mount_overlay
from .paths import TEMPLATES
from .state import INIT_PID_FILE, PID_FILE, LabHost, LabInfo, read_pid, write_pid
from .system import LabError, pid_alive, run

BOOT_TIMEOUT = float(os.environ.get("LLAMAFLEET_LAB_BOOT_TIMEOUT", "90"))
STOP_TIMEOUT = 20.0
POWEROFF_TIMEOUT = 60.0
# systemd as PID 1 takes this signal as `systemctl poweroff`: poweroff.target, every unit stopped in order.
POWEROFF_SIGNAL = signal.SIGRTMIN + 4
RESOLV_CANDIDATES = ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf")
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=jinja2.select_autoescape(enabled_extensions=(), default=False),  # config files, not HTML
)


def render(template: str, **values: object) -> str:
    return _templates.get_template(template).render(**values)


def put(root: Path, relative: str, text: str, mode: int = 0o644) -> None:
    """Write a file inside a host root, replacing (never following) whatever is there."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def host_resolv_conf() -> str:
    """The host's resolvers; the systemd-resolved upstream list when /etc has only its stub."""
    for candidate in RESOLV_CANDIDATES:
        if os.path.exists(candidate):
            text = Path(candidate).read_text()
            if "127.0.0.53" not in text or candidate != "/etc/resolv.conf":
                return text
    raise LabError("no usable /etc/resolv.conf on this machine to give the lab hosts")


def nameservers(resolv: str) -> list[str]:
    return [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver ")]


def prepare(lab: LabInfo, host: LabHost, lowers: list[Path], user_pubkey: str) -> str:
    """Mount the host's overlay and give it its identity; returns its new host public key."""
    hostdir = Path(host.dir)
    mount_overlay(lowers, hostdir / "upper", hostdir / "work", host.root)
    root, resolv = host.root, host_resolv_conf()
    network = render(
        "10-host0.network.j2",
        address=host.address,
        gateway=lab.gateway,
        prefixlen=lab.subnet.split("/")[1],
        dns=nameservers(resolv),
        mtu=lab.link_mtu,
    )
    put(root, "etc/hostname", f"{host.name}\n")
    put(root, "etc/machine-id", f"{uuid.uuid4().hex}\n", 0o444)
    put(root, "etc/hosts", render("hosts.j2", lab=lab.name, hostname=host.name, hosts=lab.hosts))
    put(root, "etc/resolv.conf", resolv)
    put(root, "etc/systemd/network/10-host0.network", network)
    (root / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
    put(root, "root/.ssh/authorized_keys", user_pubkey, 0o600)
    keyfile = root / "etc/ssh/ssh_host_ed25519_key"
    for old in (keyfile, keyfile.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(keyfile)],
        what=f"{host.name}: generating its SSH host key",
    )
    return " ".join(keyfile.with_suffix(".pub").read_text().split()[0:2])


def spawn(lab: str, host: LabHost, bridge: str) -> None:
    """Boot the host detached in its own cgroup (own session, stdin /dev/null, console to its log)."""
    nspawn = [
        "systemd-nspawn",
        "-D",
        str(host.root),
        "-b",
        "--register=no",
        "--keep-unit",
        "-M",
        host.machine,
        f"--network-bridge={bridge}",
        # The TUN device: wireguard-go's tunnels (cluster_tunnel), as the host kernel may have no WireGuard.
        "--bind=/dev/net/tun",
        "--resolv-conf=off",
        "--link-journal=no",
        "--timezone=off",
    ]
    argv = cgroups.wrap(cgroups.create(lab, host.name), nspawn)
    with open(host.log, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    host.pid = proc.pid
    write_pid(Path(host.dir) / PID_FILE, proc.pid)


def find_init(host: LabHost, timeout: float = 15.0) -> int:
    """The container's PID 1 (nspawn's child), recorded so `down` can kill it if nspawn is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in _children(host.pid):
            if _is_pid1_of_container(child) and _has_root(child, host.root):
                host.init_pid = child
                write_pid(Path(host.dir) / INIT_PID_FILE, child)
                return child
        if not pid_alive(host.pid):
            raise LabError(f"{host.name}: systemd-nspawn exited while booting{log_tail(host)}")
        time.sleep(0.1)
    raise LabError(f"{host.name}: timed out after {timeout:.0f} s waiting for the container's PID 1")


def _children(pid: int | None) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _is_pid1_of_container(pid: int) -> bool:
    """PID 1 of its own pid namespace (nspawn's short-lived setup child also shares the root)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    nspids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
    return len(nspids) > 1 and nspids[-1] == "1"


def _has_root(pid: int, root: Path | str) -> bool:
    """Is `root` the root directory of pid? (readlink says "/" across mount namespaces: compare inodes.)"""
    try:
        theirs, ours = os.stat(f"/proc/{pid}/root"), os.stat(root)
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def log_tail(host: LabHost, lines: int = 6) -> str:
    try:
        text = host.log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f" (console {host.log}: {' | '.join(text)})" if text else ""


def _port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def wait_ready(host: LabHost, ssh_base: list[str], timeout: float = BOOT_TIMEOUT) -> None:
    """Wait until sshd answers with the pinned key and systemd says `running`; raise naming the host."""
    deadline = time.monotonic() + timeout
    _wait_for_port(host, deadline, timeout)
    state = "no answer"
    while time.monotonic() < deadline:
        left = max(deadline - time.monotonic(), 1)
        state = _ssh_answer([*ssh_base, "systemctl", "is-system-running", "--wait"], left + 5)
        if state == "running":
            return
        if state == "degraded":
            failed = _ssh_answer([*ssh_base, "systemctl", "--failed", "--plain", "--no-legend"], 30)
            units = ", ".join(line.split()[0] for line in failed.splitlines() if line.strip())
            raise LabError(f"{host.name}: booted degraded; failed units: {units or '(none listed)'}")
        time.sleep(0.5)
    raise LabError(
        f"{host.name}: timed out after {timeout:.0f} s waiting for `systemctl "
        f"is-system-running` over SSH to say running (last answer: {state})"
    )


def _wait_for_port(host: LabHost, deadline: float, timeout: float) -> None:
    while not _port_open(host.address):
        if not pid_alive(host.pid):
            raise LabError(f"{host.name}: systemd-nspawn exited while booting{log_tail(host)}")
        if time.monotonic() > deadline:
            raise LabError(
                f"{host.name}: timed out after {timeout:.0f} s waiting for sshd on {host.address}:22{log_tail(host)}"
            )
        time.sleep(0.2)


def _ssh_answer(argv: list[str], timeout: float) -> str:
    """What a command run over ssh printed (or why it printed nothing)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:.0f} s"
    return proc.stdout.strip() or proc.stderr.strip() or f"ssh exit {proc.returncode}"


def recorded_pids(hostdir: Path) -> tuple[int | None, int | None]:
    """(nspawn pid, container PID 1) recorded for a host, each None unless still what we started."""
    root = str(hostdir / "root")
    nspawn = read_pid(hostdir / PID_FILE)
    if not (nspawn and pid_alive(nspawn) and _is_nspawn_of(nspawn, root)):
        nspawn = None
    init = read_pid(hostdir / INIT_PID_FILE)
    if not (init and pid_alive(init) and _has_root(init, root)):
        init = None
    return nspawn, init


def _is_nspawn_of(pid: int, root: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith("systemd-nspawn") and root in argv


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _reap_and_filter(pids: list[int]) -> list[int]:
    """Reap those that are our children (a test process started them); keep the living."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return [pid for pid in pids if pid_alive(pid)]


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = _reap_and_filter(pids)
    return _reap_and_filter(pids)


def stop(hostdirs: list[Path], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each nspawn (its container shuts down cleanly), bounded wait, then SIGKILL.

    A container whose nspawn is already gone (killed earlier) has its PID 1 killed at once.
    """
    recorded = [recorded_pids(d) for d in hostdirs]
    _signal([nspawn for nspawn, _ in recorded if nspawn], signal.SIGTERM)
    _signal([init for nspawn, init in recorded if init and not nspawn], signal.SIGKILL)
    left = _wait_gone([pid for pair in recorded for pid in pair if pid], timeout)
    if left:
        _signal(left, signal.SIGKILL)
        left = _wait_gone(left, 10)
    if left:
        raise LabError(f"processes {', '.join(map(str, left))} survived SIGKILL")


def power_off(host: LabHost, timeout: float = POWEROFF_TIMEOUT) -> None:
    """Shut the host down as `systemctl poweroff` does (its units stop in order); return once its nspawn and
    PID 1 are gone. Its root stays mounted. A host whose nspawn is gone already has its leftovers stopped."""
    hostdir = Path(host.dir)
    nspawn, init = recorded_pids(hostdir)
    if not (nspawn and init):
        stop([hostdir])
        return
    _signal([init], POWEROFF_SIGNAL)
    left = _wait_gone([nspawn, init], timeout)
    if left:
        raise LabError(
            f"{host.name}: still up {timeout:.0f} s after poweroff (pids {', '.join(map(str, left))})"
            f"{log_tail(host)}; `invoke lab.down` removes it"
        )


def kill_now(pids: list[int], what: str) -> None:
    """SIGKILL pids (found in a cgroup the lab created) and wait, bounded, until they are gone."""
    _signal(pids, signal.SIGKILL)
    left = _wait_gone(pids, 10)
    if left:
        raise LabError(f"{what}: processes {', '.join(map(str, left))} survived SIGKILL")
