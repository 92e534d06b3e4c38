"""The command line as a user runs it: `python -m invoke ...` in a child process started from the repository root,
and the one-line error it gives for a user's mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment(cache: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without a default inventory; LLAMAFLEET_CACHE is `cache` when given.

    `extra` variables are added last. A developer's LLAMAFLEET_INVENTORY, ANSIBLE_* variables and ansible.cfg
    never reach a test's command (ANSIBLE_CONFIG names one with no settings).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "LLAMAFLEET_INVENTORY" and not name.startswith("ANSIBLE_")
    }
    env["ANSIBLE_CONFIG"] = str(ROOT / "tests" / "fixtures" / "empty-ansible.cfg")
    if cache is not None:
        env["LLAMAFLEET_CACHE"] = str(cache)
    return {**env, **extra}


def invoke_argv(*args: str) -> list[str]:
    """The argv of `invoke ARGS...` run by this interpreter."""
    return [sys.executable, "-m", "invoke", *args]


def invoke(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`invoke ARGS...` run to its end (`env`: environment() when not given); stdout and stderr as text."""
    env = environment() if env is None else env
    return subprocess.run(invoke_argv(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def invoke_all(
    runs: Mapping[str, Sequence[str]], env: Mapping[str, str] | None = None, timeout: float = 60
) -> dict[str, subprocess.CompletedProcess]:
    """Each of `runs` (name -> args) started at once, as each costs about a second of imports; name -> result."""
    env = environment() if env is None else env
    started = {
        name: subprocess.Popen(
            invoke_argv(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, args in runs.items()
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=timeout)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def error_line(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """The one line `error: ...` on stderr of a command that exited with `code` (no traceback anywhere), checked
    to hold each of `fragments`."""
    __tracebackhide__ = True
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert [fragment for fragment in fragments if fragment not in lines[0]] == [], lines[0]
    return lines[0]
