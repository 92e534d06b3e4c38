"""Writes inventory folders (hosts.yml plus group_vars/host_vars files) for the unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write each file (dedented) below `root`; returns the path of hosts.yml."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "hosts.yml"
