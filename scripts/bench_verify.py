"""Benchmark: wall time of the whole `invoke verify` CLI process on a served cluster, and its SSH commands per host.

Brings up a lab of 1 head + N workers (default 2; `--workers 15` for the 16-host figure), provisions it
from the cached llama.cpp artifact, deploys a generated 1 MB model, then runs `invoke verify` as a user
does (a new process: Python start, imports, every check including a completion) and prints the figures
against the targets: under 3 s for 1 head + 2 workers, at most twice that for 1 head + 15 workers.
`-i INVENTORY` (with `-e` as for verify) times an already served cluster instead. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import lab  # noqa: E402

TARGET_3_HOSTS = 3.0  # seconds, the target for 1 head + 2 workers
LAB_NAME = "vbench"
VERSION = "b11434"


def task(name: str, inventory: str, extra: list[str]) -> tuple[float, int, dict]:
    """Run `invoke NAME -i INVENTORY --json ...` in a new process: (wall seconds, exit status, JSON document)."""
    command = [sys.executable, "-m", "invoke", name, "-i", inventory, "--json", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise SystemExit(f"invoke {name}: no JSON (exit {done.returncode}): {done.stderr[-2000:]}") from None
    return wall, done.returncode, doc


def serve(workers: int) -> tuple[str, list[str]]:
    """A lab of 1 head + `workers`, provisioned and serving a generated model; (inventory, -e options)."""
    source = subprocess.run(
        [sys.executable, str(ROOT / "scripts/fetch_llama_source.py"), VERSION], capture_output=True, text=True
    ).stdout.split()[0]
    extra = ["-e", f"llama_cpp_version={VERSION}", "-e", f"llama_cpp_source_archive={source}"]
    info = lab.up(LAB_NAME, workers=workers, firewall="nftables")
    model = Path(tempfile.mkdtemp()) / "bench-tiny.gguf"
    # Two layers per device, so every worker gets a share (the 1 MB default has 4 layers).
    layers = str(max(4, 2 * (workers + 1)))
    make = [sys.executable, str(ROOT / "scripts/make_gguf.py"), str(model), "--size", "1M", "--n-layer", layers]
    subprocess.run(make, check=True)
    for name, more in (("provision", []), ("deploy", ["--model", str(model)])):
        wall, code, doc = task(name, info.inventory, extra + more)
        print(f"{name}: exit {code} in {wall:.1f} s")
        if code:
            raise SystemExit(f"{name} failed: {doc.get('messages', [])[-5:]}")
    return info.inventory, extra


def measure(inventory: str, extra: list[str], runs: int) -> None:
    walls = []
    for _ in range(runs):
        wall, code, doc = task("verify", inventory, extra)
        walls.append(wall)
        hosts = len(doc["ssh_commands"])
        print(
            f"invoke verify, {hosts} hosts: exit {code}, {doc['passed']} passed, {doc['failed']} failed, "
            f"{doc['skipped']} skipped; whole CLI process {wall:.2f} s (suite {doc['seconds']:.2f} s); "
            f"SSH commands per host: {sorted(set(doc['ssh_commands'].values()))}"
        )
    best = min(walls)
    target = TARGET_3_HOSTS if hosts <= 3 else 2 * TARGET_3_HOSTS
    print(f"best of {runs}: {best:.2f} s for {hosts} hosts; target {target:.0f} s ({best / target:.2f}x of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", help="a served cluster's inventory (no lab is made)")
    parser.add_argument("-e", "--extra-vars", action="append", default=[], help="as for invoke verify")
    parser.add_argument("--workers", type=int, default=2, help="workers of the lab (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="verify runs to time (default 3)")
    args = parser.parse_args()
    if args.inventory:
        measure(args.inventory, [x for e in args.extra_vars for x in ("-e", e)], args.runs)
        return
    try:
        inventory, extra = serve(args.workers)
        measure(inventory, extra, args.runs)
    finally:
        lab.down(LAB_NAME)


if __name__ == "__main__":
    main()
