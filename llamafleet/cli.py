"""What the invoke tasks do: parse shared flags, load the inventory, run, print, exit."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

from invoke.exceptions import Exit

from . import inventory as inventory_mod
from . import playbooks
from .errors import LlamafleetError, NotImplementedYet, UsageError
from .output import Output
from .runner import Runner, RunOptions

COMMON_HELP = {
    "inventory": "Inventory file (default: $LLAMAFLEET_INVENTORY, else inventory/hosts.yml).",
    "limit": "Only these hosts or groups (comma-separated names).",
    "check": "Plan only: read the hosts' facts for real, change nothing, report what would change.",
    "diff": "Show a unified diff of every file that changes (or would change with --check).",
    "json": "Print one JSON document (recap + per-operation results) instead of lines.",
    "forks": "How many hosts to work on at once (default 10).",
    "extra_vars": "KEY=VALUE (value read as YAML) or @file.yml; highest precedence; repeatable.",
    "accept_new_host_keys": "Trust and record SSH host keys of hosts not yet in known_hosts (first contact).",
}


def reports_errors(function: Callable) -> Callable:
    """Turn llamafleet's errors into one line on stderr and the error's exit status."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except LlamafleetError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except BrokenPipeError:  # output piped into head(1) and the like
            sys.stderr.close()
            raise Exit(code=1) from None

    return wrapper


def load_inventory(path: str | None, extra_vars: list[str] | None) -> inventory_mod.Inventory:
    return inventory_mod.load(path or inventory_mod.default_path(), inventory_mod.parse_extra_vars(extra_vars))


def options(check: bool, diff: bool, forks: int, limit: str | None, accept_new_host_keys: bool) -> RunOptions:
    if forks < 1:
        raise UsageError("--forks must be at least 1")
    return RunOptions(check=check, diff=diff, forks=forks, limit=limit, accept_new_host_keys=accept_new_host_keys)


def finish(runner: Runner, output: Output, code: int) -> None:
    output.finish(code, {"round_trips": runner.round_trips})
    if code:
        raise Exit(code=code)


@reports_errors
def provision(inventory: str | None, extra_vars: list[str] | None, json_mode: bool, **flags: Any) -> None:
    """Bring every host to the provisioned state."""
    inv = load_inventory(inventory, extra_vars)
    output = Output(json_mode=json_mode, check=flags["check"])
    runner = Runner(inv, options(**flags), output)
    code = runner.run(playbooks.PROVISION)
    if playbooks.PENDING_ROLES:
        output.say(f"note: roles not available yet, not applied: {', '.join(playbooks.PENDING_ROLES)}")
    finish(runner, output, code)


@reports_errors
def show_inventory(inventory: str | None, extra_vars: list[str] | None, json_mode: bool, limit: str | None) -> None:
    """Print the resolved inventory."""
    inv = load_inventory(inventory, extra_vars)
    chosen = {h.name for h in inv.select(limit)}
    doc = inv.to_json()
    doc["hosts"] = {k: v for k, v in doc["hosts"].items() if k in chosen}
    if json_mode:
        json.dump(doc, sys.stdout, indent=2, default=str)
        print()
        return
    for name, host in doc["hosts"].items():
        print(f"{name}  groups: {', '.join(host['groups']) or '-'}")
        for key, value in host["vars"].items():
            if value not in (None, [], {}, ""):
                shown = "(secret)" if key in ("ansible_become_password", "ansible_password") else value
                print(f"    {key}: {shown}")


def not_yet(task: str, what: str) -> None:
    raise Exit(f"error: {NotImplementedYet(f'{task}: {what}')}", code=NotImplementedYet.exit_code)


STATUS_SCRIPT = (
    "readlink /opt/llama.cpp/current || true; "
    "for u in llama-rpc.service llama-server.service; do "
    'printf \'%s %s %s\\n\' "$u" $(systemctl show -p LoadState -p ActiveState --value "$u" 2>/dev/null); done'
)


def _unit_states(lines: list[str]) -> dict[str, str]:
    """'llama-rpc.service loaded active' lines -> {unit: active | absent | ...}."""
    states = {}
    for line in lines:
        unit, *values = line.split()
        if unit.startswith("llama-"):
            states[unit] = values[1] if len(values) == 2 and values[0] == "loaded" else "absent"
    return states


@reports_errors
def status(
    inventory: str | None,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    limit: str | None,
    accept_new_host_keys: bool,
) -> None:
    """One line per host: reachable, OS, the llama.cpp release in use, service states."""
    inv = load_inventory(inventory, extra_vars)
    output = Output(json_mode=json_mode)
    runner = Runner(inv, options(False, False, 10, limit, accept_new_host_keys), output)
    report: dict[str, dict[str, Any]] = {}

    def probe(host) -> None:
        os_info = runner.os(host)
        lines = runner.remote(host, STATUS_SCRIPT).stdout.splitlines()
        release = lines[0] if lines and not lines[0].startswith("llama-") else None
        services = _unit_states(lines)
        report[host.name] = {
            "os": f"{os_info['id']} {os_info['version_id']} {os_info['arch']}",
            "release": release,
            "services": services,
        }
        if not json_mode:
            units = ", ".join(f"{k.split('.')[0]}={v or 'absent'}" for k, v in services.items())
            output.say(f"{host.name:<12} {report[host.name]['os']:<22} {release or 'no llama.cpp'}  {units}")

    try:
        runner.each_host(runner.hosts, probe)
    finally:
        runner.close()
    code = runner.exit_code()
    if json_mode:
        print(json.dumps({"hosts": report, "recap": {h: dict(c) for h, c in output.recap.items()}}, indent=2))
    elif code:
        output.finish(code)
    if code:
        raise Exit(code=code)
