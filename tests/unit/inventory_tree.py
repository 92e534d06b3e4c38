"""Writes inventory folders (hosts.yml plus group_vars/host_vars files) for the unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

# A head and the start of the workers group; tests append their workers (line 8 onwards).
HEAD_AND_WORKERS = """\
all:
  children:
    head:
      hosts:
        h1: {ansible_host: 10.0.0.1}
    workers:
      hosts:
"""

# Line 11 is w2's variable line; tests put one variable there (WITH_W2_VAR % "rpc_port: 1").
W2_VAR_LINE = 11
WITH_W2_VAR = (
    HEAD_AND_WORKERS
    + """\
        w1: {ansible_host: 10.0.0.2}
        w2:
          ansible_host: 10.0.0.3
          %s
"""
)
GOOD = WITH_W2_VAR % "rpc_port: 50052"


def closed_loopback(*var_lines: str) -> str:
    """hosts.yml of a head and a worker on loopback with a port nothing listens on (a command that got past
    validation would fail to connect, exit 3), pinned to llama.cpp b11434, with `var_lines` among all's vars."""
    extra = "".join(f"    {line}\n" for line in var_lines)
    return (
        "all:\n  vars:\n    ansible_port: 1\n    known_hosts_file: known_hosts\n    llama_cpp_version: b11434\n"
        + extra
        + "  children:\n    head:\n      hosts:\n        h1: {ansible_host: 127.0.0.1}\n"
        + "    workers:\n      hosts:\n        w1: {ansible_host: 127.0.0.2}\n"
    )


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write each file below `root` (text dedented, bytes as they are); returns the path of hosts.yml."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    return root / "hosts.yml"
