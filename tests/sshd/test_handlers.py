"""Handlers: notified across roles, run once by the role that handles them, planned from facts; typos refused."""

from __future__ import annotations

import io

from llamafleet import inventory
from llamafleet.facts import PathInfo
from llamafleet.operations import Change, NoChange, Operation, Shell, files
from llamafleet.output import Output
from llamafleet.roles import Role
from llamafleet.runner import Phase, Runner, RunOptions
from llamafleet.shell import quote


def role(name: str, operations, handlers=None) -> Role:
    return Role(name, operations, handlers=handlers or {})


def marker_written(path: str) -> Operation:
    """A handler that plans from a fact: it writes `path` once, and is satisfied when it exists."""
    fact = PathInfo(path, False)

    def plan(facts):
        if facts[fact] is not None:
            return NoChange(f"{path} exists")
        return Change((Shell(quote("echo handled >> %s", path)),), "notified")

    return Operation(f"marker {path}", [fact], plan)


def run(sshd, tmp_path, phases) -> tuple[int, Output]:
    path = tmp_path / "hosts.yml"
    path.write_text(sshd.inventory_text())
    output = Output(json_mode=True, stream=io.StringIO())
    return Runner(inventory.load(path), RunOptions(), output).play(phases), output


def test_a_notification_waits_for_the_role_that_handles_it(sshd, tmp_path):
    config, marker = tmp_path / "app.conf", tmp_path / "restarted"
    first = role("first", lambda ctx: [files.file(str(config), "x=1\n", notify=("restart app",))])
    second = role("second", lambda ctx: [], {"restart app": lambda ctx: marker_written(str(marker))})
    code, output = run(sshd, tmp_path, [Phase("one", (first,)), Phase("two", (second,))])
    assert code == 0, [r for r in output.results if r.status == "failed"]
    assert marker.read_text() == "handled\n", "handled once, by the second role"
    handled = [r for r in output.results if r.operation == f"marker {marker}"]
    assert [(r.role, r.status) for r in handled] == [("second", "changed")]
    code, output = run(sshd, tmp_path, [Phase("one", (first,)), Phase("two", (second,))])
    assert not [r for r in output.results if r.operation == f"marker {marker}"], "nothing changed: not notified"


def test_a_notification_nobody_handles_fails_the_host_before_anything_changes(sshd, tmp_path):
    config = tmp_path / "app.conf"
    typo = role("typo", lambda ctx: [files.file(str(config), "x=1\n", notify=("restrat app",))])
    handler = role("other", lambda ctx: [], {"restart app": lambda ctx: marker_written(str(tmp_path / "m"))})
    code, output = run(sshd, tmp_path, [Phase("one", (typo,)), Phase("two", (handler,))])
    assert code == 1
    [failure] = [r for r in output.results if r.status == "failed"]
    assert "notifies 'restrat app', which no handler of this run handles" in failure.reason
    assert not config.exists(), "nothing applied"


def started(path: str, done: tuple[str, ...]) -> Operation:
    """A service start stand-in: appends to `path` every run, doing the work of the handlers in `done`."""
    return Operation(
        f"start {path}", [], lambda facts: Change((Shell(quote("echo started >> %s", path)),), "x", done=done)
    )


def test_a_change_that_does_a_handlers_work_withdraws_it(sshd, tmp_path):
    """A unit started after its new file needs no restart: notified before the start, the handler does not run."""
    config, log, marker = tmp_path / "app.conf", tmp_path / "started", tmp_path / "restarted"
    ops = [files.file(str(config), "x=1\n", notify=("restart app",)), started(str(log), ("restart app",))]
    app = role("app", lambda ctx: ops, {"restart app": lambda ctx: marker_written(str(marker))})
    code, output = run(sshd, tmp_path, [Phase("one", (app,))])
    assert code == 0, [r for r in output.results if r.status == "failed"]
    assert log.read_text() == "started\n" and not marker.exists(), "started once, not restarted after"


def test_a_notification_after_the_withdrawing_change_still_runs_its_handler(sshd, tmp_path):
    config, log, marker = tmp_path / "app.conf", tmp_path / "started", tmp_path / "restarted"
    ops = [started(str(log), ("restart app",)), files.file(str(config), "x=1\n", notify=("restart app",))]
    app = role("app", lambda ctx: ops, {"restart app": lambda ctx: marker_written(str(marker))})
    code, output = run(sshd, tmp_path, [Phase("one", (app,))])
    assert code == 0, [r for r in output.results if r.status == "failed"]
    assert marker.read_text() == "handled\n", "changed after the start: restarted"
