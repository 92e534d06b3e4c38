"""A cgroup per lab host, so the hosts' systemd instances never share (and race on) one tree.

With no systemd on the machine, `nspawn --keep-unit` puts each container under its caller's
cgroup + /payload; hosts started from one process would all share /payload/system.slice and
remove each other's unit cgroups while booting (status=219/CGROUP). Each host therefore starts
in llamafleet-lab/<lab>/<host> of both the named systemd (v1) and the unified (v2) hierarchy.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .system import LabError, run

V1_ROOT = Path("/sys/fs/cgroup/systemd")
V2_DEFAULT = Path("/sys/fs/cgroup/unified")
TOP = "llamafleet-lab"
# Joins the cgroups given as $1 and $2, then becomes the command that follows (same pid).
TRAMPOLINE = 'for procs in "$1" "$2"; do echo $$ > "$procs" || exit 125; done; shift 2; exec "$@"'


def _mounts(fstype: str) -> list[Path]:
    with open("/proc/mounts", encoding="utf-8") as table:
        return [Path(line.split()[1]) for line in table if line.split()[2:3] == [fstype]]


def _v2_root() -> Path | None:
    mounted = _mounts("cgroup2")
    return mounted[0] if mounted else None


def hierarchies() -> list[Path]:
    """Roots of the hierarchies a container's systemd uses (named v1 systemd, if any, and v2)."""
    roots = [V1_ROOT] if (V1_ROOT / "cgroup.procs").exists() and V1_ROOT in _mounts("cgroup") else []
    v2 = _v2_root()
    if v2 is None:  # hybrid hosts without systemd lack it: mount it where systemd would (nspawn does too)
        V2_DEFAULT.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "cgroup2", "cgroup2", str(V2_DEFAULT)], what="mounting the cgroup2 hierarchy")
        v2 = V2_DEFAULT
    return [*roots, v2]


def create(lab: str, host: str) -> list[Path]:
    """The host's cgroup in every hierarchy; returns their cgroup.procs files."""
    procs = []
    for root in hierarchies():
        directory = root / TOP / lab / host
        directory.mkdir(parents=True, exist_ok=True)
        procs.append(directory / "cgroup.procs")
    if len(procs) == 1:
        procs.append(procs[0])
    return procs


def wrap(procs: list[Path], argv: list[str]) -> list[str]:
    """argv started inside the given cgroups (a fixed sh script, the paths passed as arguments)."""
    return ["sh", "-c", TRAMPOLINE, "sh", str(procs[0]), str(procs[1]), *argv]


def _existing_lab_dirs(lab: str) -> list[Path]:
    roots = [V1_ROOT, *_mounts("cgroup2")]
    return [root / TOP / lab for root in roots if (root / TOP / lab).is_dir()]


def members(lab: str) -> list[int]:
    """Every pid still inside the lab's cgroups (all hierarchies, all depths)."""
    pids = set()
    for top in _existing_lab_dirs(lab):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(pid) for pid in procs.read_text().split())
    return sorted(pids)


def remove(lab: str) -> None:
    """Remove the lab's (empty) cgroups, deepest first."""
    for top in _existing_lab_dirs(lab):
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            _rmdir(directory)
        _rmdir(top)
        with contextlib.suppress(OSError):
            (top.parent).rmdir()
    left = _existing_lab_dirs(lab)
    if left:
        raise LabError(f"lab {lab}: cgroups still in use: {', '.join(map(str, left))}")


def _rmdir(directory: Path) -> None:
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LabError(f"cannot remove cgroup {directory}: {exc.strerror}") from exc
