"""Benchmark: provisioning a 1 head + 2 worker lab from bare hosts against building on one host alone.

Both runs start from bare lab hosts and an empty artifact cache and use the real CLI
(`invoke provision`), so each includes packages, the build and the installs. The 3-host run
should cost little more than the 1-host one: one build, then copies. Then a re-run with
nothing to change is timed and its SSH round trips per host are printed. Figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import lab  # noqa: E402


def source(version: str) -> str:
    fetched = subprocess.run(
        [sys.executable, str(ROOT / "scripts/fetch_llama_source.py"), version],
        capture_output=True,
        text=True,
        check=True,
    )
    return fetched.stdout.split()[0]


def provision(inventory: str, cache: str, version: str, archive: str) -> tuple[float, dict]:
    command = [
        sys.executable,
        "-m",
        "invoke",
        "provision",
        "-i",
        inventory,
        "--json",
        "-e",
        f"llama_cpp_version={version}",
        "-e",
        f"llama_cpp_source_archive={archive}",
    ]
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "LLAMAFLEET_CACHE": cache}, capture_output=True, text=True, timeout=5400
    )
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"provision failed (exit {result.returncode}): {result.stdout[-3000:]}{result.stderr[-2000:]}")
    return elapsed, json.loads(result.stdout)


def on_fresh_lab(name: str, workers: int, version: str, archive: str, rerun: bool = False) -> list:
    with tempfile.TemporaryDirectory(prefix="llamafleet-bench-cache-") as cache:
        info = lab.up(name=name, workers=workers)
        try:
            runs = [provision(info.inventory, cache, version, archive)]
            if rerun:
                runs.append(provision(info.inventory, cache, version, archive))
            return runs
        finally:
            lab.down(name=name)


def builds(doc: dict) -> list[dict]:
    return [r for r in doc["results"] if " built for " in r["operation"] and r["status"] == "changed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="b11434")
    args = parser.parse_args()
    archive = source(args.version)
    [(alone, doc_one)] = on_fresh_lab("bone", 0, args.version, archive)
    [(three, doc_three), (noop, doc_noop)] = on_fresh_lab("bthree", 2, args.version, archive, rerun=True)
    changed = sum(c["changed"] for c in doc_noop["recap"].values())
    print(f"1 host, bare -> provisioned (the build alone):  {alone:7.1f} s ({len(builds(doc_one))} build)")
    print(f"3 hosts, bare -> provisioned:                   {three:7.1f} s ({len(builds(doc_three))} build)")
    print(f"ratio 3 hosts / 1 host:                         {three / alone:7.2f}x (target <= 1.25x)")
    print(f"re-run with nothing to change (CLI, 3 hosts):   {noop:7.2f} s, {changed} changed")
    print(
        f"SSH round trips per host in that re-run:        "
        f"{', '.join(f'{h}={n}' for h, n in doc_noop['round_trips'].items())}"
    )


if __name__ == "__main__":
    main()
