"""teardown --purge: llamafleet's trees removed, never across a mount point; what is mounted inside them stays.

`rm -rf --one-file-system` alone would not do: a bind mount of a directory on the same filesystem (a
shared models folder bound to /var/lib/llamafleet/models) has the same device number, so rm and
`find -xdev` go through it. The mount points are read from /proc/self/mountinfo instead: nothing at or
below one is touched, the directories that lead to it stay (emptied of everything else), and the run
says what was left and why. `--one-file-system` stays as a second wall for a mount made meanwhile.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from llamafleet.facts import Fact
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell
from llamafleet.shell import quote

# For each tree: "tree PATH" when it exists; for each mount point at or below it, "mount POINT" and the
# entries of every directory between the tree and the mount point ("entry PATH"): the only directories
# a purge cannot remove whole. mountinfo writes space, tab, newline and backslash as octal escapes.
_SCRIPT = """for _p in {trees}; do if [ -e "$_p" ] || [ -L "$_p" ]; then echo "tree $_p"; fi; done
awk '{{print $5}}' /proc/self/mountinfo | while IFS= read -r _m; do _m=$(printf '%b' "$_m")
for _p in {trees}; do case "$_m" in "$_p"|"$_p"/*) echo "mount $_m"; _d=$_m
while [ "$_d" != "$_p" ]; do _d=${{_d%/*}}; find "$_d" -mindepth 1 -maxdepth 1 -printf 'entry %p\\n'; done;;
esac; done; done"""


@dataclass(frozen=True)
class Trees:
    """The trees that exist, the mount points at or below them, and the entries of the directories leading there."""

    present: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    entries: tuple[str, ...] = ()


class TreesLeft(Fact):
    """What of the trees is left, and where filesystems are mounted inside them (see _SCRIPT)."""

    def __init__(self, trees: tuple[str, ...]) -> None:
        super().__init__(tuple(trees))

    def command(self) -> str:
        return _SCRIPT.format(trees=" ".join(quote("%s", tree) for tree in self.args[0]))

    def process(self, lines: list[str]) -> Trees:
        found: dict[str, list[str]] = {"tree": [], "mount": [], "entry": []}
        for line in lines:
            kind, _, path = line.partition(" ")
            if kind in found and path.startswith("/") and path not in found[kind]:
                found[kind].append(path)
        return Trees(tuple(found["tree"]), tuple(found["mount"]), tuple(found["entry"]))


def within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def removal(trees: Trees) -> tuple[list[str], list[str]]:
    """(what to remove whole, the mount points left): every tree, or around the mount points inside it."""
    remove, kept = [], []
    for tree in trees.present:
        mounts = [m for m in trees.mounts if within(m, tree)]
        if not mounts:
            remove.append(tree)
            continue
        kept += [m for m in mounts if not any(m != other and within(m, other) for other in mounts)]  # outermost
        leading = {parent for m in mounts for parent in _parents(m, tree)} - set(mounts)
        remove += [
            entry
            for entry in trees.entries
            if posixpath.normpath(entry) == entry  # no `..` from a name that held a newline
            and posixpath.dirname(entry) in leading
            and entry not in leading
            and not any(within(entry, m) or within(posixpath.dirname(entry), m) for m in mounts)
        ]
    return sorted(set(remove)), sorted(set(kept))


def _parents(path: str, top: str) -> list[str]:
    """The directories from `path`'s parent up to `top` (both inside `top`)."""
    found = []
    while path != top and within(path, top):
        path = posixpath.dirname(path)
        found.append(path)
    return found


def left_line(kept: list[str]) -> str:
    return (
        f"warning: left {', '.join(kept)}: mount point(s), another filesystem whose files are not llamafleet's to "
        "delete (unmount and purge again to remove)"
    )


def trees_absent(trees: tuple[str, ...]) -> Operation:
    """Nothing of `trees` is left but the mount points inside them (with their files) and the directories above."""
    fact = TreesLeft(trees)

    def planner(facts: Facts):
        remove, kept = removal(facts[fact])
        left = [left_line(kept)] if kept else []
        if not remove:
            return NoChange("; ".join(left or ["absent"]))
        command = "rm -rf --one-file-system -- " + " ".join(quote("%s", path) for path in remove)
        return Change((Shell(command),), "; ".join([f"{len(remove)} path(s) to remove", *left]))

    return Operation(f"absent {', '.join(trees)} (mount points inside kept)", [fact], planner)
