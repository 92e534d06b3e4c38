"""What lab tests share: the llama.cpp version, and the CLI run as a user runs it (JSON out, never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llamafleet.lab.inventory import ssh_argv

ROOT = Path(__file__).resolve().parents[2]
VERSION = "b11434"


def invoke(task: str, inventory: str, env: dict[str, str], *extra: str) -> tuple[int, dict]:
    """Run `invoke TASK -i INVENTORY --json ...`; (exit status, the JSON document). Never a traceback."""
    command = [sys.executable, "-m", "invoke", task, "-i", inventory, "--json", *extra]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert "Traceback" not in result.stderr, result.stderr
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"not JSON (exit {result.returncode}): {result.stdout[-2000:]} {result.stderr[-2000:]}")


def source_vars(source: str) -> list[str]:
    return ["-e", f"llama_cpp_version={VERSION}", "-e", f"llama_cpp_source_archive={source}"]


def ssh(lab, host: str, command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """A command on a lab host as root (lab key, pinned host key)."""
    argv = ssh_argv(lab, lab.host(host)) + [command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
