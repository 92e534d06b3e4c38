"""What the benchmarks that bring up a lab of their own share: the CLI run as users run it, and the lab's life."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import lab  # noqa: E402


def invoke(*argv: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """One CLI process: its wall time and what it printed (SystemExit naming the task when it failed)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600)  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"invoke {argv[0]} failed (exit {done.returncode}): {done.stdout[-2500:]} "
                         f"{done.stderr[-1500:]}")  # fmt: skip
    return elapsed, done


def on_own_lab(
    description: str,
    default_name: str,
    measure: Callable[..., None],
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse --name (and what `options` adds), run measure(lab name, environment with LLAMAFLEET_CACHE[, parsed
    arguments when `options` is given]) and remove the lab whatever happens."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--name", default=default_name, help="lab name (removed at the end)")
    if options is not None:
        options(parser)
    args = parser.parse_args()
    env = {**os.environ, "LLAMAFLEET_CACHE": os.environ.get("LLAMAFLEET_CACHE", str(Path.home() / ".cache/llamafleet"))}
    try:
        if options is None:
            measure(args.name, env)
        else:
            measure(args.name, env, args)
    finally:
        lab.down(args.name)
