#!/usr/bin/env python3
"""Benchmark the lab: base build (or cached), 3-host bring-up, an N-host bring-up and memory per host."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from llamafleet import lab  # noqa: E402
from llamafleet.lab.base import ensure_base  # noqa: E402

BENCH_LAB = "bench"


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


def bring_up(hosts: int) -> None:
    """Time lab.up for `hosts` hosts (returns once all run systemd `running` and answer SSH)."""
    started = time.monotonic()
    try:
        info = lab.up(BENCH_LAB, workers=hosts - 1)
        ready = time.monotonic() - started
        memory = host_memory_mib(info)
        print(f"{hosts}-host lab up, every host `running` and answering SSH: {ready:.1f} s")
        print(
            f"  memory per host (PSS of the container's processes): mean {statistics.mean(memory):.1f} MiB, "
            f"min {min(memory):.1f}, max {max(memory):.1f}"
        )
    finally:
        started = time.monotonic()
        lab.down(BENCH_LAB)
        print(f"  down: {time.monotonic() - started:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=0, help="also bring up a lab of this many hosts (e.g. 16)")
    args = parser.parse_args()
    _, build = ensure_base()
    print("base root: cached" if build is None else f"base root built in {build:.1f} s")
    bring_up(3)
    if args.hosts:
        bring_up(args.hosts)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lab.LabError as exc:
        sys.exit(f"error: {exc}")
