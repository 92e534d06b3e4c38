"""File-system operations: directory, file with content, template, symlink, absent."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..facts import FileState, PathInfo
from ..shell import quote
from .base import Change, Facts, NoChange, Operation, Shell, Upload, octal


def _ownership_steps(path: str, state: FileState, mode: str, owner: str, group: str) -> list[str]:
    steps = []
    if state.mode != octal(mode):
        steps.append(quote("chmod %s %s", mode, path))
    if (state.owner, state.group) != (owner, group):
        steps.append(quote("chown %s:%s %s", owner, group, path))
    return steps


def _refuse_directory(path: str) -> Change:
    """A file is wanted where a directory stands: fail rather than delete someone's directory."""
    return Change((Shell(quote("echo %s is a directory, not a file >&2; exit 1", path)),), "is a directory")


def directory(
    path: str, *, mode: str = "0755", owner: str = "root", group: str = "root", notify: tuple[str, ...] = ()
) -> Operation:
    """`path` is a directory with this mode and ownership (parents created as needed)."""
    info = PathInfo(path, False)

    def plan(facts: Facts):
        state = facts[info]
        if state is None:
            return Change((Shell(quote("install -d -m %s -o %s -g %s %s", mode, owner, group, path)),), "missing")
        if state.type != "directory":
            return Change(
                (Shell(quote("rm -f %s && install -d -m %s -o %s -g %s %s", path, mode, owner, group, path)),),
                f"is a {state.type}, not a directory",
            )
        fixes = _ownership_steps(path, state, mode, owner, group)
        if not fixes:
            return NoChange(f"directory exists, {mode} {owner}:{group}")
        return Change(tuple(Shell(s) for s in fixes), "mode or owner differ")

    return Operation(f"directory {path}", [info], plan, notify)


def file(
    path: str,
    content: bytes | str,
    *,
    mode: str = "0644",
    owner: str = "root",
    group: str = "root",
    notify: tuple[str, ...] = (),
    secret: bool = False,
    description: str | None = None,
) -> Operation:
    """`path` holds exactly `content` (compared by sha256 on the host: nothing is uploaded to check)."""
    data = content.encode() if isinstance(content, str) else content
    wanted = hashlib.sha256(data).hexdigest()
    upload = Upload(path, data, mode, owner, group)
    shown = None if secret else data.decode(errors="replace")
    matched = f"content sha256 {wanted[:12]} matches, {mode} {owner}:{group}"
    plan = _holds(path, wanted, upload, matched, diff=(shown, secret))
    return Operation(description or f"file {path}", [PathInfo(path, True)], plan, notify, sensitive=secret)


def copy(
    path: str,
    source: Path,
    sha256: str,
    *,
    mode: str = "0644",
    owner: str = "root",
    group: str = "root",
    notify: tuple[str, ...] = (),
) -> Operation:
    """`path` is a copy of a (possibly large) controller file whose sha256 is already known."""
    upload = Upload(path, source, mode, owner, group, sha256)
    plan = _holds(path, sha256, upload, f"sha256 {sha256[:12]} matches")
    return Operation(f"copy {source.name} -> {path}", [PathInfo(path, True)], plan, notify)


def _holds(path: str, sha256: str, upload: Upload, matched: str, diff: tuple[str | None, bool] | None = None):
    """The planner of file and copy: `upload` unless `path` is a regular file with this sha256, then its
    mode and owner fixed. `diff`: (the new text or None, secret) for --diff; a copy shows none."""
    info = PathInfo(path, True)

    def plan(facts: Facts):
        state = facts[info]
        if state is not None and state.type == "directory":
            return _refuse_directory(path)
        if state is None or state.type != "file" or state.sha256 != sha256:
            why = "missing" if state is None else "not a regular file" if state.type != "file" else "content differs"
            if diff is None:
                return Change((upload,), why)
            shown, secret = diff
            return Change((upload,), why, path, shown, secret)
        fixes = _ownership_steps(path, state, upload.mode, upload.owner, upload.group)
        if not fixes:
            return NoChange(matched)
        return Change(tuple(Shell(s) for s in fixes), "mode or owner differ")

    return plan


def symlink(path: str, target: str, *, notify: tuple[str, ...] = ()) -> Operation:
    """`path` is a symlink to `target`, switched atomically (rename over the old link)."""
    info = PathInfo(path, False)

    def plan(facts: Facts):
        state = facts[info]
        if state is not None and state.type == "link" and state.target == target:
            return NoChange(f"points to {target}")
        if state is not None and state.type == "directory":
            return Change((Shell(quote("echo %s is a directory, not a symlink >&2; exit 1", path)),), "is a directory")
        switch = quote("ln -sfn %s %s.lf-new && mv -Tf %s.lf-new %s", target, path, path, path)
        return Change((Shell(switch),), "missing" if state is None else f"points to {state.target}")

    return Operation(f"symlink {path} -> {target}", [info], plan, notify)


def absent(path: str, *, notify: tuple[str, ...] = ()) -> Operation:
    """Nothing exists at `path`."""
    info = PathInfo(path, False)

    def plan(facts: Facts):
        state = facts[info]
        if state is None:
            return NoChange("absent")
        return Change((Shell(quote("rm -rf -- %s", path)),), f"a {state.type} exists")

    return Operation(f"absent {path}", [info], plan, notify)


def template(path: str, rendered: str, **kwargs) -> Operation:
    """A rendered template as a file (rendering happens on the controller, see roles.render)."""
    return file(path, rendered, **kwargs)


def source_sha256(path: Path) -> str:
    """sha256 of a controller file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
