"""The controller's own cache folder (artifacts, downloads, crash reports): where it is, private to its owner."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .operations.files import source_sha256


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


def known_sha256(path: Path) -> str:
    """sha256 of a controller file, hashed once: recorded in the cache under its size, mtime, inode and ctime."""
    stat = path.stat()
    key = [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]
    real = str(path.resolve())
    record = private_dir(cache_root() / "checksums") / hashlib.sha256(real.encode()).hexdigest()[:24]
    try:
        saved = json.loads(record.read_text())
        if saved["path"] == real and saved["stat"] == key:
            return saved["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = source_sha256(path)
    record.write_text(json.dumps({"path": real, "stat": key, "sha256": digest}))
    return digest
