"""The controller's own cache folder (artifacts, downloads, crash reports): where it is, private to its owner."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$LLAMAFLEET_CACHE, else ~/.cache/llamafleet."""
    return Path(os.environ.get("LLAMAFLEET_CACHE") or Path.home() / ".cache/llamafleet").expanduser()


def private_dir(path: Path) -> Path:
    """Create `path` (and any missing folder between it and the cache root) readable by us only.

    What lies in the cache is pushed to hosts as root: nobody else on the controller may swap it.
    """
    root = cache_root()
    chain = [path, *path.parents]
    inside = chain[: chain.index(root) + 1] if root in chain else [path]
    for folder in reversed(inside):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
    return path
