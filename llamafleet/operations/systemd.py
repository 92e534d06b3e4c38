"""systemd operations: unit files and service state."""

from __future__ import annotations

from ..facts import PathInfo, SystemdUnit
from ..shell import quote
from . import files
from .base import Change, Facts, NoChange, Operation, Shell

UNIT_DIR = "/etc/systemd/system"


def unit_file(name: str, content: str, *, notify: tuple[str, ...] = ()) -> Operation:
    """/etc/systemd/system/NAME holds `content`; systemd has re-read it."""
    operation = files.file(f"{UNIT_DIR}/{name}", content, notify=notify, description=f"unit file {name}")
    inner = operation.planner

    def plan(facts: Facts):
        result = inner(facts)
        if isinstance(result, Change):
            return Change(
                (*result.steps, Shell("systemctl daemon-reload")), result.reason, result.diff_path, result.new_text
            )
        return result

    operation.planner = plan
    return operation


def service(
    name: str,
    *,
    running: bool = True,
    enabled: bool = True,
    notify: tuple[str, ...] = (),
    restarts: tuple[str, ...] = (),
) -> Operation:
    """The unit `name` is (not) running and (not) enabled at boot.

    `restarts`: the handlers that restart this unit. Starting it does their work (it starts on the files
    written before), so a start withdraws them: a unit started in a run is not restarted again at its end.
    """
    fact = SystemdUnit(name)
    started = restarts if running else ()

    def plan(facts: Facts):
        state = facts[fact]
        if state.get("LoadState") != "loaded":
            # Usually its unit file is written earlier in the same run (or would be, with --check);
            # when it really does not exist, systemctl fails with its own clear message.
            wanted = [quote("systemctl enable %s", name)] if enabled else []
            wanted += [quote("systemctl start %s", name)] if running else []
            why = f"unit {state.get('LoadState', 'unknown')} yet"
            return Change(tuple(Shell(s) for s in wanted), why, done=started)
        steps, why = [], []
        is_enabled = state.get("UnitFileState") in ("enabled", "enabled-runtime", "static", "alias")
        if enabled != is_enabled:
            steps.append(quote("systemctl enable %s" if enabled else "systemctl disable %s", name))
            why.append(f"unit file state {state.get('UnitFileState')}")
        is_running = state.get("ActiveState") in ("active", "activating", "reloading")
        if running != is_running:
            steps.append(quote("systemctl start %s" if running else "systemctl stop %s", name))
            why.append(f"state {state.get('ActiveState')}")
        if not steps:
            return NoChange(f"{state.get('ActiveState')}, {state.get('UnitFileState')}")
        return Change(tuple(Shell(s) for s in steps), ", ".join(why), done=started if running != is_running else ())

    return Operation(f"service {name} running={running} enabled={enabled}", [fact], plan, notify)


def restarted(name: str) -> Operation:
    """Restart a unit (a handler: runs only when something it listens to changed)."""

    def plan(facts: Facts):
        return Change((Shell(quote("systemctl restart %s", name)),), "notified")

    return Operation(f"restart {name}", [], plan, idempotent=False)


def service_absent(name: str) -> Operation:
    """The unit `name` is stopped, disabled and its file in /etc/systemd/system removed (systemd re-read)."""
    fact, path = SystemdUnit(name), f"{UNIT_DIR}/{name}"
    info = PathInfo(path, False)

    def plan(facts: Facts):
        state, found = facts[fact], facts[info]
        loaded = state.get("LoadState") not in (None, "", "not-found")
        running = state.get("ActiveState") not in (None, "", "inactive", "failed")
        if not (loaded or running or found):
            return NoChange("no such unit")
        steps = [
            # A unit whose file is gone but which still runs is stopped by name; its own errors are shown.
            quote("systemctl disable --now %s || systemctl stop %s", name, name) if loaded else None,
            quote("rm -f -- %s", path) if found else None,
            "systemctl daemon-reload",
            quote("systemctl reset-failed %s 2>/dev/null || true", name),
        ]
        why = f"{state.get('LoadState')}, {state.get('ActiveState')}" + (f", {path} exists" if found else "")
        return Change(tuple(Shell(s) for s in steps if s), why)

    return Operation(f"no unit {name}", [fact, info], plan)
