"""The facts a playbook's run read on each host, kept so that the next run reads them all in its first batch.

A run with nothing to change reads the same facts as the run before it; read together in the first
round trip, every later phase finds its facts known and costs no round trip of its own. What is
remembered is each fact's command; its output is parsed by the fact that asks for it, later in the
run, and only while nothing changed on the host (as for every fact read ahead). A remembered command
no role asks for any more costs a little time once and is forgotten.

A second memory is kept per command line (`of_command_line`): every fact the process's tasks asked
for on each host (`invoke provision ... deploy ...`: both tasks' facts). The next process of the
same command line reads them ahead, while it still loads its roles (runner.read_ahead).

The file lives in the controller's private cache, which is trusted as the artifacts it also holds
are (they are installed as root on every host).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .controller_cache import cache_root, private_dir

MAX_COMMANDS = 256  # per host: a memory that grows past this is not one run's facts any more
MAX_BYTES = 4 << 20


def location(inventory: Path, playbook: str) -> Path:
    """The memory of one playbook (its phases and roles) over one inventory."""
    name = hashlib.sha256(f"{inventory.resolve()}\n{playbook}".encode()).hexdigest()[:24]
    return cache_root() / "facts" / f"{name}.json"


def of_command_line(inventory: Path, argv: list[str]) -> Path:
    """The memory of one command line (the tasks it names, with their flags, run in this folder) over one inventory:
    what the process's runs asked for, read ahead by the next process of the same command line."""
    return location(inventory, "command line\n" + json.dumps([os.getcwd(), *argv]))


def recall(path: Path) -> dict[str, list[str]]:
    """host -> the commands its facts were read with last time; nothing when absent or not readable."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        host: [c for c in commands if isinstance(c, str)][:MAX_COMMANDS]
        for host, commands in data.items()
        if isinstance(host, str) and isinstance(commands, list)
    }


def remember(path: Path, read: dict[str, list[str]]) -> None:
    """Keep these hosts' commands (the others' stay as they were); written whole or not at all."""
    known = recall(path)
    merged = {**known, **{host: commands[:MAX_COMMANDS] for host, commands in read.items()}}
    if merged == known:
        return
    written = None
    try:
        folder = private_dir(path.parent)
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".facts-", suffix=".part", delete=False) as handle:
            written = Path(handle.name)
            json.dump(merged, handle)
        os.replace(written, path)
    except OSError:  # a cache that cannot be written costs the next run its head start, nothing else
        if written is not None:  # only this run's own part: another process may be writing its own
            written.unlink(missing_ok=True)
