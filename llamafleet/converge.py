"""The tasks that converge hosts to a playbook (provision, deploy, rollback, teardown) and what they say after."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import paths, playbooks
from .errors import LlamafleetError
from .inventory import clusters_of
from .output import Output
from .runner import Phase, Runner
from .shell import quote

if TYPE_CHECKING:  # role modules load with the run that uses them
    from .roles.model.source import Model

# Each call gives a new runner over the task's inventory, options, output and the process's connections;
# `given=(...)` hands the roles the task's parameters (see run.Handoffs).
Connect = Callable[..., Runner]


def provision(connect: Connect, phases: list[Phase] | None = None) -> int:
    """Bring every host to the provisioned state (all of provision's phases, or `phases`); when it fails after
    hosts switched release, switch them back."""
    runner = connect()
    code = runner.play(playbooks.provision() if phases is None else phases)
    show_worker_journals(runner, runner.output)
    from .roles.release.role import Switched  # role modules load with the run that uses them

    switched = sorted(runner.handoffs(Switched).hosts)
    if code and switched and not runner.options.check:
        roll_back_upgrade(connect, runner.output, switched)
    return finish(runner, code)


def roll_back_upgrade(connect: Connect, output: Output, hosts: list[str]) -> None:
    """A provision failed after hosts switched release: every switched host back to its previous one."""
    failed = [r for r in output.results if r.status in ("failed", "unreachable")]
    what = "; ".join(f"{r.host}: {r.role}: {r.operation}: {r.reason}" for r in failed[:5]) or "see above"
    output.say(f"\nupgrade failed ({what}); rolling {', '.join(hosts)} back to the previous release")
    from .roles.rollback.role import Only

    runner = connect(given=(Only(frozenset(hosts)),))
    back = runner.play(playbooks.rollback())
    show_worker_journals(runner, output)
    output.say(
        "rollback: every switched host is back on its previous release and serving"
        if back == 0
        else f"rollback failed too (exit {back}): see the results above; `invoke status` shows each host"
    )


def deploy(connect: Connect, source: Model) -> int:
    """Put the resolved model on the head and (re)start llama-server on it; say when it served."""
    from .roles.head.role import Serving
    from .roles.model.source import Deploying

    runner = connect(given=(Deploying(source),))
    started = time.monotonic()
    code = runner.play(playbooks.deploy())
    show_worker_journals(runner, runner.output)
    if code == 0 and not runner.options.check:
        ready = runner.handoffs(Serving).ready_seconds
        serving = "".join(f"; {host} served it {seconds:.1f} s after its restart" for host, seconds in ready.items())
        runner.output.say(
            f"deployed {source.name} (sha256 {source.sha256[:12]}) in {time.monotonic() - started:.1f} s{serving}"
        )
    return finish(runner, code)


def rollback(connect: Connect) -> int:
    """Every host back to its previous llama.cpp release together, then workers and head restarted."""
    runner = connect()
    code = runner.play(playbooks.rollback())
    show_worker_journals(runner, runner.output)
    return finish(runner, code)


def teardown(connect: Connect, purge: bool) -> int:
    """Units and firewall rules removed on every host; with purge, everything llamafleet put there."""
    from .roles.teardown.role import Purge

    runner = connect(given=(Purge(purge),))
    return finish(runner, runner.play(playbooks.teardown()))


def show_worker_journals(runner: Runner, output: Output) -> None:
    """When a head failed, the end of its workers' journals too: a worker is often why (wrong build, no bind)."""
    failed = [
        members
        for members in clusters_of(runner.inventory).values()
        if members.head in runner.hosts and not runner.healthy([members.head])
    ]
    if not failed:
        return
    command = quote("journalctl -u %s -n 50 --no-pager -o short-iso", paths.RPC_UNIT)
    workers = [w for members in failed for w in members.workers if w in runner.hosts]
    for worker in runner.healthy(workers):
        try:
            lines = runner.remote(worker, command).stdout.splitlines()
        except LlamafleetError as exc:
            lines = [f"(journal not read: {exc})"]
        for line in lines:
            output.say(f"{worker.name:<12} | {line}")
    runner.close()


def finish(runner: Runner, code: int) -> int:
    """Print the run's recap (or its JSON document, with the round trips per host); return its exit code."""
    runner.output.finish(code, {"round_trips": runner.round_trips})
    return code
