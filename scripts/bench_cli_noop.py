"""Benchmark: `invoke provision` and `invoke deploy` with nothing to change, whole CLI processes timed.

Brings up a lab of 1 head + N workers (default 2; --clusters C of them, --balancers B in front; or -i INVENTORY of
existing hosts), provisions
and deploys a generated 1 MB model once, then times the CLI processes (interpreter start included)
of a provision and a deploy that change nothing, against the floor of `ssh host true` to every host
in parallel measured in the same run. Prints the times, the floor, the ratios and the SSH round
trips per host; asserts nothing about time. Needs the llama.cpp artifact cached (or builds it once).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import inventory, lab  # noqa: E402
from scripts.bench_noop import ssh_floor  # noqa: E402

VERSION = "b11434"


def both(inv: str, pins: list[str], model: Path) -> float:
    """One CLI process running both tasks: `invoke provision ... deploy ... --model M`."""
    command = [sys.executable, "-m", "invoke", "provision", "-i", inv, *pins, "deploy", "-i", inv, *pins,
               "--model", str(model)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - start
    if done.returncode or "changed=0" not in done.stdout or re.search(r"changed=[1-9]", done.stdout):
        raise SystemExit(f"provision + deploy failed or changed something: {done.stdout[-1500:]} {done.stderr[-800:]}")
    return elapsed


def cli(task: str, inv: str, pins: list[str], *extra: str) -> tuple[float, dict]:
    command = [sys.executable, "-m", "invoke", task, "-i", inv, "--json", *pins, *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{task} failed (exit {done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
    return elapsed, json.loads(done.stdout)


def changed(doc: dict) -> int:
    return sum(counts.get("changed", 0) for counts in doc["recap"].values())


def measure(inv_path: str, repeats: int, forks: int) -> None:
    source = subprocess.run(
        [sys.executable, str(ROOT / "scripts/fetch_llama_source.py"), VERSION], capture_output=True, text=True
    ).stdout.split()[0]
    pins = ["-e", f"llama_cpp_version={VERSION}", "-e", f"llama_cpp_source_archive={source}", "--forks", str(forks)]
    model = Path(tempfile.mkdtemp()) / "bench-noop.gguf"
    subprocess.run([sys.executable, str(ROOT / "scripts/make_gguf.py"), str(model), "--size", "1M"], check=True)
    first, _ = cli("provision", inv_path, pins)
    deployed, _ = cli("deploy", inv_path, pins, "--model", str(model))
    hosts = len(inventory.load(inv_path).hosts)
    print(f"hosts: {hosts}; first provision {first:.1f} s, first deploy {deployed:.1f} s")
    floors, provisions, deploys, combined, trips = [], [], [], [], {}
    for _ in range(repeats):
        floors.append(ssh_floor(inventory.load(inv_path)))
        combined.append(both(inv_path, pins, model))
        for task, times, extra in (("provision", provisions, ()), ("deploy", deploys, ("--model", str(model)))):
            elapsed, doc = cli(task, inv_path, pins, *extra)
            if changed(doc):
                raise SystemExit(f"a {task} with nothing to do changed {changed(doc)} things")
            times.append(elapsed)
            trips[task] = doc["round_trips"]
    floor, provision, deploy = (statistics.median(x) for x in (floors, provisions, deploys))
    print(f"ssh host true, all in parallel:   {floor:6.2f} s (median of {repeats})")
    for label, value, runs in (("provision", provision, provisions), ("deploy", deploy, deploys)):
        print(f"invoke {label + ',':10} no change: {value:6.2f} s ({value / floor:.1f}x floor), min {min(runs):.2f}")
    print(f"provision + deploy, two processes: {provision + deploy:6.2f} s")
    one = statistics.median(combined)
    print(f"provision + deploy, one process:  {one:6.2f} s ({one / floor:.1f}x floor), min {min(combined):.2f}")
    for task, counts in trips.items():
        print(f"SSH round trips per host, {task:9}: {', '.join(f'{h}={n}' for h, n in counts.items())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", help="an existing cluster instead of a fresh lab")
    parser.add_argument("--workers", type=int, default=2, help="workers per cluster")
    parser.add_argument("--clusters", type=int, default=1)
    parser.add_argument("--balancers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--name", default="benchcli", help="the lab's name (1-10 lowercase letters/digits)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up (its inventory: inventory/NAME.yml)")
    args = parser.parse_args()
    if args.inventory:
        measure(args.inventory, args.repeats, args.forks)
        return
    info = lab.up(name=args.name, workers=args.workers, clusters=args.clusters, balancers=args.balancers)
    try:
        measure(info.inventory, args.repeats, args.forks)
    finally:
        if not args.keep:
            lab.down(name=args.name)


if __name__ == "__main__":
    main()
