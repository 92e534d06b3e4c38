"""Overlay mounts for lab roots, and unmounting everything below a directory."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from .system import LabError, run


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_under(path: os.PathLike | str) -> list[str]:
    """Mount points at or below path, deepest first (the order to unmount them in)."""
    top = os.path.realpath(path)
    with open("/proc/mounts", encoding="utf-8") as table:
        points = [_unescape(line.split()[1]) for line in table if line.strip()]
    below = {point for point in points if point == top or point.startswith(top.rstrip("/") + "/")}
    return sorted(below, key=lambda point: point.count("/"), reverse=True)


def unmount_all_under(path: os.PathLike | str, *, attempts: int = 10) -> None:
    """Unmount every mount below path; a mount still busy after retries is detached lazily."""
    for _ in range(attempts):
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            run(["umount", point], what=f"unmounting {point}", check=False)
        time.sleep(0.2)
    for point in mounts_under(path):
        run(["umount", "--lazy", point], what=f"detaching busy mount {point}")
    if mounts_under(path):
        raise LabError(f"could not unmount {', '.join(mounts_under(path))}")


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlayfs at target: lowers (topmost first) read-only, writes go to upper."""
    paths = [*lowers, upper, work, target]
    bad = [str(p) for p in paths if ":" in str(p) or "," in str(p)]
    if bad:
        raise LabError(f"overlay paths may not contain ':' or ',': {', '.join(bad)}")
    for directory in (upper, work, target):
        directory.mkdir(parents=True, exist_ok=True)
    lowerdir = ":".join(str(p) for p in lowers)
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)], what=f"mounting the overlay root {target}")
