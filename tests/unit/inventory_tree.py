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


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write each file (dedented) below `root`; returns the path of hosts.yml."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "hosts.yml"
