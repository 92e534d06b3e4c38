"""Benchmark: wall time and SSH round trips of a provisioning run that has nothing to change.

Brings up a 3-host lab (or uses -i INVENTORY), converges the sample role of a dozen steps
(packages, user, directories, a 10 MB file, a JSON file, a symlink, templates, units,
services), then times runs that change nothing against the floor of `ssh host true` to every
host in parallel, measured in the same run. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import inventory, lab, roles  # noqa: E402
from llamafleet.output import Output  # noqa: E402
from llamafleet.runner import Phase, Runner, RunOptions  # noqa: E402

SAMPLE = roles.load_path(ROOT / "scripts/sample_role/role.py", "llamafleet_sample_role")


def provision_once(inv: inventory.Inventory) -> tuple[float, Output, Runner]:
    output = Output(json_mode=True, stream=io.StringIO())
    runner = Runner(inv, RunOptions(forks=10), output)
    start = time.perf_counter()
    code = runner.play([Phase("sample", (SAMPLE,))])
    elapsed = time.perf_counter() - start
    if code:
        failed = [r for r in output.results if r.status in ("failed", "unreachable")]
        raise SystemExit(f"run failed (exit {code}): {failed[:3]}")
    return elapsed, output, runner


def ssh_floor(inv: inventory.Inventory) -> float:
    """Wall time of `ssh host true` to every host at once (OpenSSH, fresh connections)."""

    def one(host: inventory.Host) -> None:
        v = host.vars
        subprocess.run(
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                f"UserKnownHostsFile={v['known_hosts_file']}",
                "-i",
                str(v["ansible_ssh_private_key_file"]),
                "-p",
                str(host.connection.port),
                f"{v.get('ansible_user', 'root')}@{host.connection.address}",
                "true",
            ],
            check=True,
            timeout=30,
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(len(inv.hosts)) as pool:
        list(pool.map(one, inv.hosts.values()))
    return time.perf_counter() - start


def measure(inv: inventory.Inventory, repeats: int) -> None:
    first, output, _ = provision_once(inv)
    changed = sum(r.status == "changed" for r in output.results)
    print(f"first run (converge):           {first:6.2f} s, {changed} changes over {len(inv.hosts)} hosts")
    floors = [ssh_floor(inv) for _ in range(repeats)]
    noops, trips = [], {}
    for _ in range(repeats):
        elapsed, output, runner = provision_once(inv)
        changed = sum(r.status == "changed" for r in output.results)
        if changed:
            raise SystemExit(f"a no-op run changed {changed} things: not idempotent")
        noops.append(elapsed)
        trips = runner.round_trips
    steps = sum(r.status == "ok" for r in output.results) // len(inv.hosts)
    floor, noop = statistics.median(floors), statistics.median(noops)
    print(f"operations per host:            {steps}")
    print(f"ssh host true, all in parallel: {floor:6.2f} s (median of {repeats})")
    print(f"no-op run, all hosts:           {noop:6.2f} s (median of {repeats}; includes SSH connect)")
    print(f"no-op / ssh floor:              {noop / floor:6.2f}x")
    print(f"SSH round trips per host:       {', '.join(f'{h}={n}' for h, n in trips.items())}")
    print("(reference on this kind of machine: Ansible 13-19 s, pyinfra 2.9 s, floor 0.33 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", help="use these hosts instead of a fresh lab")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.inventory:
        measure(inventory.load(args.inventory), args.repeats)
        return
    info = lab.up(name="bench", workers=2)
    try:
        measure(inventory.load(info.inventory), args.repeats)
    finally:
        lab.down(name="bench")


if __name__ == "__main__":
    main()
