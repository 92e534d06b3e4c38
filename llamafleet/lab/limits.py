"""The machine's limits a lab depends on, checked before any host boots: inotify, memory, addresses.

Every lab host's systemd, logind, dbus and getty hold inotify instances and watches of their own,
all charged to root on the machine (the hosts share its user namespace). When root's instances run
out, the next host's systemd cannot watch its units and boots `degraded`. Raising the two inotify
limits only lifts a cap on kernel memory per user, so lab.up raises them itself (runtime only,
back to the default at reboot) up to a bound, and says so; memory and addresses it cannot make, so
it stops with one line naming the limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .system import LabError

# Measured on booted hosts: root's are systemd 5, logind and getty 1 each, firewalld 1 more; dbus-daemon
# and polkitd are charged to their own users (1-2 a host), so the limit that suits root suits them.
# With room for SSH sessions and the services a provision adds.
PER_HOST_INSTANCES = 12
PER_HOST_WATCHES = 100
PER_HOST_MEMORY_MIB = 64  # 12-16 MiB measured (PSS), plus page cache of the overlays
RESERVE_MEMORY_MIB = 512  # left for the machine itself
SUBNET_HOSTS = 253  # a lab's /24 less network, gateway and broadcast
MAX_INSTANCES = 8192  # raised no further: beyond this the request itself is suspect
WATCH_BYTES = 1080  # kernel memory one watch may take (64-bit)
MAX_WATCH_SHARE = 0.05  # watches raised only while all of them could take at most 5% of the memory
INOTIFY = "anon_inode:inotify"


@dataclass(frozen=True)
class Machine:
    """What the checks read: the limits in force and what root already uses."""

    max_instances: int
    max_watches: int
    used_instances: int
    used_watches: int
    mem_total_mib: int
    mem_available_mib: int


@dataclass(frozen=True)
class Raise:
    """A sysctl lab.up sets itself: which, where, from and to."""

    name: str
    old: int
    new: int

    def line(self, hosts: int) -> str:
        return f"raised {self.name} {self.old} -> {self.new} for {hosts} lab hosts (runtime only, reset at reboot)"


def read_machine(proc: Path = Path("/proc")) -> Machine:
    """The limits and root's inotify use, from /proc (a few hundred small reads: milliseconds)."""
    instances, watches = root_inotify(proc)
    meminfo = parse_meminfo((proc / "meminfo").read_text())
    return Machine(
        max_instances=int((proc / "sys/fs/inotify/max_user_instances").read_text()),
        max_watches=int((proc / "sys/fs/inotify/max_user_watches").read_text()),
        used_instances=instances,
        used_watches=watches,
        mem_total_mib=meminfo["MemTotal"] // 1024,
        mem_available_mib=meminfo["MemAvailable"] // 1024,
    )


def root_inotify(proc: Path) -> tuple[int, int]:
    """Inotify instances and watches held by root's processes (the user every lab host runs as).

    Only processes that hold an inotify descriptor have their status read: a few milliseconds in all.
    """
    instances = watches = 0
    with os.scandir(proc) as entries:
        for entry in entries:
            if entry.name.isdigit():
                counts = _process_inotify(entry)
                instances, watches = instances + counts[0], watches + counts[1]
    return instances, watches


def _process_inotify(process: os.DirEntry) -> tuple[int, int]:
    """One process's inotify instances and watches if it runs as root; (0, 0) if not, or if it ended meanwhile."""
    try:
        with os.scandir(f"{process.path}/fd") as fds:
            found = [fd.name for fd in fds if os.readlink(fd.path) == INOTIFY]
        if not found or effective_uid(Path(process.path, "status").read_text()) != 0:
            return 0, 0
        fdinfo = [Path(process.path, "fdinfo", fd).read_text() for fd in found]
    except OSError:
        return 0, 0
    return len(found), sum(line.startswith("inotify wd:") for text in fdinfo for line in text.splitlines())


def effective_uid(status: str) -> int | None:
    """The effective uid in /proc/PID/status (the user an inotify instance is charged to)."""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])
    return None


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {field: KiB}."""
    found = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if rest.split():
            found[name] = int(rest.split()[0])
    return found


def plan(hosts: int, machine: Machine) -> tuple[list[Raise], list[str]]:
    """The limits to raise for `hosts` more hosts, and the problems no raise can fix (one line each)."""
    raises, problems = [], []
    instances = machine.used_instances + hosts * PER_HOST_INSTANCES
    if instances > machine.max_instances:
        wanted = -(-instances // 256) * 256
        if wanted <= MAX_INSTANCES:
            raises.append(Raise("fs.inotify.max_user_instances", machine.max_instances, wanted))
        else:
            problems.append(_too_few("fs.inotify.max_user_instances", machine.max_instances, instances, hosts))
    watches = machine.used_watches + hosts * PER_HOST_WATCHES
    if watches > machine.max_watches:
        wanted = -(-watches // 8192) * 8192
        if wanted * WATCH_BYTES <= machine.mem_total_mib * 2**20 * MAX_WATCH_SHARE:
            raises.append(Raise("fs.inotify.max_user_watches", machine.max_watches, wanted))
        else:
            problems.append(_too_few("fs.inotify.max_user_watches", machine.max_watches, watches, hosts))
    memory = hosts * PER_HOST_MEMORY_MIB + RESERVE_MEMORY_MIB
    if memory > machine.mem_available_mib:
        problems.append(
            f"MemAvailable is {machine.mem_available_mib} MiB; {hosts} lab hosts need about {memory} MiB "
            f"({PER_HOST_MEMORY_MIB} MiB each, {RESERVE_MEMORY_MIB} MiB kept free): use fewer --workers "
            "or free memory (other labs: invoke lab.status)"
        )
    if hosts > SUBNET_HOSTS:
        problems.append(f"a lab's /24 holds {SUBNET_HOSTS} hosts, {hosts} asked: use fewer --workers")
    return raises, problems


def _too_few(name: str, current: int, needed: int, hosts: int) -> str:
    return (
        f"{name} is {current}; {hosts} lab hosts need about {needed}, more than lab.up raises it by itself: "
        f"raise it with `sysctl -w {name}={needed}` if this machine can spare it, or use fewer --workers"
    )


def ensure(hosts: int, say: Callable[[str], None], proc: Path = Path("/proc")) -> None:
    """Stop with one line unless the machine can hold `hosts` more lab hosts; raise what is safe to raise."""
    raises, problems = plan(hosts, read_machine(proc))
    if problems:
        raise LabError(problems[0])
    for change in raises:
        try:
            Path(proc, "sys", *change.name.split(".")).write_text(f"{change.new}\n")
        except OSError as exc:  # /proc/sys read-only (an unprivileged container)
            raise LabError(
                f"{change.name} is {change.old}, {hosts} lab hosts need {change.new} and it cannot be raised here "
                f"({exc.strerror}): run `sysctl -w {change.name}={change.new}` where it can"
            ) from None
        say(change.line(hosts))
