"""What the invoke tasks do: check the flags, load the inventory, call the module that owns the task, print, exit."""

from __future__ import annotations

import atexit
import functools
import json
import sys
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from . import converge, playbooks, rolling
from . import inventory as inventory_mod
from .cli_errors import reports_errors
from .errors import UsageError
from .flags import parse_forks, parse_whole
from .loading import NO_VAULT, Sources, Vault, configuration, load_inventory
from .output import Output
from .runner import Runner, RunOptions, read_ahead
from .ssh import ConnectionPool

# The tasks of one command line (`invoke provision deploy --model M`) reach each host over one connection.
CONNECTIONS = ConnectionPool()
atexit.register(CONNECTIONS.close)


def options(
    check: bool, diff: bool, forks: str | int | None, limit: str | None, accept_new_host_keys: bool
) -> RunOptions:
    """The run's options; --forks defaults to ansible.cfg's forks (or ANSIBLE_FORKS), else 10."""
    forks = forks if forks is not None else configuration().forks
    return RunOptions(
        check=check, diff=diff, forks=parse_forks(forks), limit=limit, accept_new_host_keys=accept_new_host_keys
    )


def _runners(inv: inventory_mod.Inventory, run_options: RunOptions, json_mode: bool) -> converge.Connect:
    """What makes a task's runners: one output for all of them, and the process's connections."""
    output = Output(json_mode=json_mode, check=run_options.check)
    return functools.partial(Runner, inv, run_options, output, CONNECTIONS)


def _read_only(inv: inventory_mod.Inventory, limit: str | None, accept_new_host_keys: bool) -> converge.Connect:
    """The runners of a task that only reads the hosts and prints its own lines (status, logs)."""
    return _runners(inv, options(False, False, 10, limit, accept_new_host_keys), json_mode=True)


def _changing_hosts(
    inventory: Sources, extra_vars: list[str] | None, json_mode: bool, flags: dict[str, Any]
) -> tuple[inventory_mod.Inventory, RunOptions, bool]:
    """The setup of a task that changes hosts: a bad flag is reported before the inventory is read."""
    vault = flags.pop("vault", NO_VAULT)
    run_options = options(**flags)
    return load_inventory(inventory, extra_vars, vault), run_options, json_mode


def _connect(setup: tuple[inventory_mod.Inventory, RunOptions, bool]) -> converge.Connect:
    """The task's runners; the first task of the process starts reading its hosts' facts now (runner.read_ahead)."""
    inv, run_options, json_mode = setup
    read_ahead(CONNECTIONS, inv, run_options, sys.argv[1:])
    return _runners(inv, run_options, json_mode)


def _exit_with(code: int) -> None:
    """The task's exit status: 0 returns, anything else ends the process with it."""
    if code:
        raise Exit(code=code)


@reports_errors
def provision(
    inventory: Sources,
    extra_vars: list[str] | None,
    json_mode: bool,
    tags: str | None = None,
    skip_tags: str | None = None,
    serial: str | int | None = None,
    **flags: Any,
) -> None:
    """Bring every host (or the roles --tags names) to the provisioned state."""
    tagged, skipped = _names(tags), _names(skip_tags)
    playbooks.selected(playbooks.PROVISION_ROLES, tagged, skipped, playbooks.PROVISION_NEEDS)  # before the inventory
    count = rolling.parse_serial(1 if serial is None else serial)
    connect = _connect(_changing_hosts(inventory, extra_vars, json_mode, flags))
    _exit_with(converge.provision(connect, playbooks.provision(tagged, skipped), count))  # roles load meanwhile


def _names(value: str | None) -> tuple[str, ...]:
    """A comma-separated list of names, as --tags takes them."""
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


@reports_errors
def teardown(inventory: Sources, extra_vars: list[str] | None, json_mode: bool, purge: bool, **flags: Any) -> None:
    """Units and firewall rules removed on every host; with purge, everything llamafleet put there."""
    _exit_with(converge.teardown(_connect(_changing_hosts(inventory, extra_vars, json_mode, flags)), purge))


@reports_errors
def rollback(inventory: Sources, extra_vars: list[str] | None, json_mode: bool, **flags: Any) -> None:
    """Every host back to its previous llama.cpp release together, then workers and head restarted."""
    _exit_with(converge.rollback(_connect(_changing_hosts(inventory, extra_vars, json_mode, flags))))


@reports_errors
def deploy(
    model: str | None,
    inventory: Sources,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    sha256: str | None = None,
    alias: str | None = None,
    serial: str | int | None = None,
    **flags: Any,
) -> None:
    """Put a GGUF model on the head and (re)start llama-server on it; wait until it is ready."""
    if not model:
        raise UsageError("--model is required: a GGUF file, an http(s) URL or hf://owner/repo/file.gguf")
    count = rolling.parse_serial(1 if serial is None else serial)
    setup = _changing_hosts(inventory, extra_vars, json_mode, flags)
    # Downloaded, checked (GGUF, --sha256) and hashed here, before any connection: refused, nothing is sent.
    from .roles.model.source import resolve  # role modules load with the task that uses them

    source = resolve(model, sha256=sha256, alias=alias, progress=not json_mode)
    _exit_with(converge.deploy(_connect(setup), source, count))


@reports_errors
def show_inventory(
    inventory: Sources,
    extra_vars: list[str] | None,
    json_mode: bool,
    limit: str | None,
    vault: Vault = NO_VAULT,
    show_vaulted: bool = False,
) -> None:
    """Print the resolved inventory."""
    from . import inventory_listing  # the other tasks need none of it

    inventory_listing.show(load_inventory(inventory, extra_vars, vault), limit, json_mode, show_vaulted=show_vaulted)


@reports_errors
def verify(
    inventory: Sources,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    limit: str | None,
    junit_xml: str | None,
    html: str | None,
    vault: Vault = NO_VAULT,
) -> None:
    """Run the verify suite against the inventory; print the per-host summary; exit 0 only if every check passed."""
    from .verify.suite import Suite

    suite = Suite.of(load_inventory(inventory, extra_vars, vault), limit)
    for warning in suite.expect.fleet.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    suite.start()
    from .verify import report  # pytest and its plugins load while the hosts are read

    try:
        code, doc = report.run(suite, junit_xml=junit_xml, html=html)
    finally:
        suite.close()
    (report.print_json if json_mode else report.print_summary)(doc)
    _exit_with(code)


@reports_errors
def status(
    inventory: Sources,
    extra_vars: list[str] | None,
    json_mode: bool,
    *,
    limit: str | None,
    accept_new_host_keys: bool,
    vault: Vault = NO_VAULT,
) -> None:
    """One row per host, head first then the workers in inventory order, read in parallel."""
    from . import status as status_mod  # the other tasks need none of it

    inv = load_inventory(inventory, extra_vars, vault)
    rows, code = status_mod.read(inv, _read_only(inv, limit, accept_new_host_keys))
    if json_mode:
        print(json.dumps({"hosts": {row.host: row.to_json() for row in rows}}, indent=2))
    else:
        print(status_mod.table(rows))
    _exit_with(code)


@reports_errors
def logs(
    inventory: Sources,
    extra_vars: list[str] | None,
    *,
    limit: str | None,
    unit: str | None,
    lines: str | int,
    follow: bool,
    accept_new_host_keys: bool,
    vault: Vault = NO_VAULT,
) -> None:
    """The journal of the head's and the workers' units, each line prefixed with its host."""
    from . import logs as logs_mod  # the other tasks need none of it

    if unit not in (None, *logs_mod.UNITS):
        raise UsageError(f"--unit: {unit!r} is not one of {', '.join(logs_mod.UNITS)}")
    count = parse_whole("--lines", lines, 1, logs_mod.MAX_LINES)
    inv = load_inventory(inventory, extra_vars, vault)
    _exit_with(logs_mod.show(inv, _read_only(inv, limit, accept_new_host_keys), unit, count, follow))


@reports_errors
def bench(
    inventory: Sources,
    extra_vars: list[str] | None,
    *,
    compare: str | bool | None,
    list_runs: bool,
    plot: str | None,
    vault: Vault = NO_VAULT,
    **measuring: Any,
) -> None:
    """Measure through the head's API (or compare runs kept in the history) and print a table.

    `measuring`: prompt_tokens, gen_tokens, concurrency, rounds, label and out, as bench.measure takes them.
    """
    from . import bench as bench_mod  # requests: imported by the commands that use it, not by every run

    inv = load_inventory(inventory, extra_vars, vault)
    runs = bench_mod.History.beside(inv.path)
    if list_runs:
        for run in runs.runs():
            print(bench_mod.listed(run))
        return
    shown = runs.pick(compare) if compare not in (None, False) else []
    if not shown:
        shown = [bench_mod.measure(inv, runs, **measuring)]
        print(bench_mod.table(shown[0]))
    else:
        print(bench_mod.compare(shown))
    if plot:
        bench_mod.plot(shown, Path(plot))
        print(f"plot: {plot}")


@reports_errors
def render(
    inventory: Sources, extra_vars: list[str] | None, out: str | None, model: str | None, vault: Vault = NO_VAULT
) -> None:
    """Write every file the service roles would install, as OUT/<host>/<path>, without connecting to any host."""
    from . import render as render_mod  # the other tasks need none of it

    if not out:
        raise UsageError("render: --out DIR is required")
    model_path = render_mod.model_on_head(model)
    for path in render_mod.write(load_inventory(inventory, extra_vars, vault), Path(out).expanduser(), model_path):
        print(path)
    if model is None:
        print(f"note: no --model: the head unit loads {model_path} until deploy names the model", file=sys.stderr)
