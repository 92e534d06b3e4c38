"""Role llama_cpp on each host: the artifact staged beside the running release, then `current` switched to it."""

from __future__ import annotations

from collections.abc import Callable

from llamafleet.facts import CommandOutput, PathInfo
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell, Upload
from llamafleet.shell import quote

from . import buildscript, identity
from .hostfacts import CURRENT, IDENTITY, INCOMING, RELEASES
from .targets import Target


def staged(target: Target) -> Operation:
    """releases/<id> holds the artifact, unpacked beside the running release (which keeps serving).

    A current release whose files differ from the artifact (a binary replaced by hand) is reinstalled
    from the controller's cache, the differing files named: a converge tool converges.
    """
    manifest = PathInfo(f"{RELEASES}/{target.release_id}/BUILD.json", True)
    current = PathInfo(CURRENT, False)

    def planner(facts: Facts):
        state, link = facts[manifest], facts[current]
        wanted_sha = target.artifact.manifest_sha256 if target.artifact else None
        present = state is not None and (wanted_sha is None or state.sha256 == wanted_sha)
        running = link is not None and link.target == f"releases/{target.release_id}"
        drifted = _drifted(facts[IDENTITY], target) if present and running else []
        if present and not drifted:
            return NoChange(f"release {target.release_id} staged")
        why = (
            "not staged"
            if state is None
            else "BUILD.json differs"
            if not present
            else f"files differ from the artifact, reinstalled: {', '.join(drifted)}"
        )
        return Change(tuple(_stage_steps(target)), why)

    return Operation(f"llama.cpp {target.release_id} staged", [manifest, current, IDENTITY], planner)


def _drifted(lines: list[str] | None, target: Target) -> list[str]:
    """Files of the current release whose sha256 is not the artifact's (a binary replaced by hand, say)."""
    text = "\n".join(lines or [])
    if "@@files" not in text or target.artifact is None:
        return []
    measured = identity.with_measured_files({}, text.partition("@@files")[2])["measured"]
    wanted = target.artifact.files
    return sorted(path for path in set(measured) | set(wanted) if measured.get(path) != wanted.get(path))


def _stage_steps(target: Target) -> list:
    staged_file = f"{INCOMING}/llama.cpp-{target.release_id}.tar.gz"
    artifact = target.artifact
    if artifact is None:
        return [Shell(quote("echo no artifact for %s on the controller >&2; exit 1", target.release_id))]
    return [
        Shell(quote("rm -rf %s/%s", RELEASES, target.release_id)),
        Upload(staged_file, artifact.path, "0600", sha256=artifact.sha256),
        Shell(quote("bash -c %s", _install_script(target, "stage", staged_file, artifact.sha256))),
        Shell(quote("rm -f %s", staged_file)),
    ]


def _install_script(target: Target, mode: str, artifact: str = "-", sha256: str = "-") -> str:
    context = buildscript.install_script_context(
        artifact, sha256, target.release_id, target.settings.keep_releases, mode=mode
    )
    return buildscript.render_template(buildscript.INSTALL_TEMPLATE, context)


def switched(target: Target, on_switch: Callable[[], None]) -> Operation:
    """current points at the staged release (the one before kept as previous); at most N releases kept."""
    current = PathInfo(CURRENT, False)
    count = CommandOutput(quote("find %s -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l", RELEASES))
    keep = target.settings.keep_releases

    def planner(facts: Facts):
        link = facts[current]
        on = link is not None and link.target == f"releases/{target.release_id}"
        releases = int((facts[count] or ["0"])[0] or 0)
        if on and releases <= keep + 1:  # + previous, which is never pruned
            return NoChange(f"current is {target.release_id}")
        why = f"{releases} releases, keeping {keep}" if on else f"current is {link.target if link else 'missing'}"
        return Change((Shell(quote("bash -c %s", _install_script(target, "switch"))),), why)

    # A new release restarts what runs it (handled by roles rpc_worker and head, later in the run).
    restarts = ("restart llama-rpc", "restart llama-server")
    operation = Operation(f"llama.cpp {target.release_id} current", [current, count, IDENTITY], planner, restarts)
    operation.after.append(on_switch)
    return operation
