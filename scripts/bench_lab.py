#!/usr/bin/env python3
"""Benchmark the lab: base build (or cached), the limit check, bring-ups of growing size, time and memory per host."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from llamafleet import lab  # noqa: E402
from llamafleet.lab import limits  # noqa: E402
from llamafleet.lab.base import ensure_base  # noqa: E402


def descendants(pid: int) -> list[int]:
    """pid and every process below it (the container's PID 1 and all it started)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size of one process (shared pages divided among their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def host_memory_mib(info: lab.LabInfo) -> list[float]:
    return [sum(pss_kib(pid) for pid in descendants(host.init_pid)) / 1024 for host in info.hosts]


def bring_up(name: str, hosts: int) -> bool:
    """Time lab.up for `hosts` hosts (every host `running` and answering SSH), then lab.down; False on failure."""
    started = time.monotonic()
    try:
        info = lab.up(name, workers=hosts - 1)
        ready = time.monotonic() - started
        memory = host_memory_mib(info)
        print(
            f"{hosts}-host lab up, every host `running` and answering SSH: {ready:.1f} s ({ready / hosts:.2f} s/host)"
        )
        print(
            f"  memory per host (PSS of the container's processes): mean {statistics.mean(memory):.1f} MiB, "
            f"min {min(memory):.1f}, max {max(memory):.1f}"
        )
        machine = limits.read_machine()
        used = f"{machine.used_instances} instances, {machine.used_watches} watches"
        print(f"  root's inotify use with the lab up: {used}")
        return True
    except lab.LabError as exc:
        print(f"{hosts}-host lab failed after {time.monotonic() - started:.1f} s: {exc}")
        return False
    finally:
        started = time.monotonic()
        lab.down(name)
        print(f"  down: {time.monotonic() - started:.1f} s")


def limit_check_ms(rounds: int = 20) -> float:
    """The median time of reading the limits lab.up checks (it runs on every lab.up)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        limits.plan(32, limits.read_machine())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", default="3", help="lab sizes to bring up in turn, e.g. 3,16,32 (stops at a failure)")
    parser.add_argument("--name", default="bench", help="name of the lab brought up and down (default: bench)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.hosts.split(",")]
    _, build = ensure_base()
    print("base root: cached" if build is None else f"base root built in {build:.1f} s")
    print(f"limit check (inotify, memory): {limit_check_ms():.1f} ms (median of 20)")
    largest = 0
    for size in sizes:
        if not bring_up(args.name, size):
            break
        largest = max(largest, size)
    print(f"largest lab brought up: {largest} hosts (1 head + {max(largest - 1, 0)} workers)")
    return 0 if largest == max(sizes) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lab.LabError as exc:
        sys.exit(f"error: {exc}")
