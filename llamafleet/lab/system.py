"""Running host commands for the lab: argv lists only, clear errors, missing tools installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from ..errors import LlamafleetError


class LabError(LlamafleetError):
    """The lab could not be created, reached or removed; the message names the host and step."""


# The host commands the lab drives, and the Debian package that ships each one.
HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "tc": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "nsenter": "util-linux",
    "mount": "mount",
}


def run(
    argv: Sequence[str], *, what: str, timeout: float = 120, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run argv, capture its output; on failure raise LabError naming `what` and the output tail."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what}: timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"{what}: command not found: {argv[0]}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{what}: `{' '.join(argv)}` exited {proc.returncode}{tail(proc)}")
    return proc


def tail(proc: subprocess.CompletedProcess, lines: int = 8) -> str:
    """The last lines of a command's stderr (or stdout), prefixed for an error message."""
    text = (proc.stderr or proc.stdout or "").strip().splitlines()[-lines:]
    return (": " + " | ".join(text)) if text else ""


def require_root() -> None:
    """The lab creates bridges, mounts and containers: only root can."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (bridges, overlay mounts, systemd-nspawn): run it as root")


def ensure_host_tools(tools: Sequence[str] = tuple(HOST_TOOLS)) -> None:
    """Install the Debian packages of any missing host command (CI starts from a fresh machine)."""
    missing = sorted({HOST_TOOLS[tool] for tool in tools if shutil.which(tool) is None})
    if not missing:
        return
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    env_note = "installing the lab's host packages"
    if run(install, what=env_note, timeout=600, check=False).returncode != 0:
        run(["apt-get", "update"], what=env_note, timeout=600)
        run(install, what=env_note, timeout=600)
    still = [tool for tool in tools if shutil.which(tool) is None]
    if still:
        raise LabError(f"{env_note}: still missing after apt-get install: {', '.join(still)}")


def pid_alive(pid: int | None) -> bool:
    """True when pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def remove_tree(path: os.PathLike | str) -> None:
    """rm -rf that never crosses into a mount (a leftover bind of /dev or /proc stays untouched)."""
    if os.path.lexists(path):
        run(["rm", "-rf", "--one-file-system", "--", os.fspath(path)], what=f"removing {path}")
