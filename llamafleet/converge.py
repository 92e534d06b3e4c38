"""The tasks that converge hosts to a playbook (provision, deploy, rollback, teardown) and what they say after."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import paths, playbooks, rolling
from .cluster import Cluster, Fleet
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


def provision(connect: Connect, phases: list[Phase] | None = None, serial: int = 1) -> int:
    """Bring every host to the provisioned state (all of provision's phases, or `phases`); when it fails after
    hosts switched release, switch them back. Behind balancers, the balancers first, then the clusters `serial`
    at a time out of rotation (see rolling.py)."""
    phases = playbooks.provision() if phases is None else phases
    everyone, plan = _rolling_plan(connect, phases)
    if plan is None:
        runner = _provision_step(connect, phases, everyone)
        return finish(runner, runner.exit_code())
    runners = [everyone, plan.balancers]  # everyone holds the --check pass's round trips
    code = 0
    if plan.balancers_change and plan.keyless and any(phase.name == "tunnel" for phase in phases):
        runners.append(connect(only=plan.keyless, given=plan.given))
        code = _make_keys(runners[-1])
    if code == 0 and plan.balancers_change:  # their own roles first: the heads' rules need them
        code = plan.balancers.play(phases)
    if code == 0:
        from .roles.head.role import Serving  # role modules load with the run that uses them

        def step(hosts: frozenset[str]) -> int:
            runners.append(_provision_step(connect, phases, connect(only=hosts, given=plan.given)))
            return runners[-1].exit_code()

        def serves(head: str) -> bool:  # a head with a model deployed serves again after its step
            return runners[-1].handoffs(Serving).models.get(head) is not None

        code = rolling.roll(plan.balancers, plan.fleet, serial, step, "provisioning", wait_all=False, serves=serves)
    return finish_all(runners, code)


def _make_keys(runner: Runner) -> int:
    """The WireGuard keys of heads the balancers' tunnel names but which have none yet, made before the balancers
    move (nothing restarts), their public keys then in the run's hand-off."""
    from .roles.tunnel import role as tunnel_role  # role modules load with the run that uses them

    code = runner.play(playbooks.tunnel_keys())
    if code == 0:
        tunnel_role.prepare(runner.run, list(runner.hosts))
    return code


def _provision_step(connect: Connect, phases: list[Phase], runner: Runner) -> Runner:
    code = runner.play(phases)
    show_worker_journals(runner, runner.output)
    from .roles.release.role import Switched  # role modules load with the run that uses them

    switched = sorted(runner.handoffs(Switched).hosts)
    if code and switched and not runner.options.check:
        roll_back_upgrade(connect, runner.output, switched, frozenset(h.name for h in runner.hosts))
    return runner


@dataclass(frozen=True)
class Rolling:
    """How a run behind balancers goes: a runner of the balancers alone, the clusters to roll, whether the
    balancers change, the hand-offs every later runner of the run gets (the task's, and the WireGuard public keys
    read so far when balancers reach heads through the tunnel), and the heads of that tunnel with no key yet."""

    balancers: Runner
    fleet: Fleet
    balancers_change: bool
    given: tuple[object, ...]
    keyless: frozenset[str]


def _rolling_plan(connect: Connect, phases: list[Phase], *given: object) -> tuple[Runner, Rolling | None]:
    """A runner of every host of the run; with balancers in it (and not --check), every role's checks on every
    host done (nothing connects yet) and how the roll goes (else None: the first runner plays the task at once)."""
    everyone = connect(given=given)
    fleet = everyone.run.fleet
    selected = {host.name for host in everyone.hosts}
    balancers = frozenset(b.name for b in fleet.balancers if b.name in selected)
    if not balancers or everyone.options.check:
        if fleet.balancers and not everyone.options.check:
            everyone.output.say("warning: --limit leaves out every balancer: the clusters change while in rotation")
        return everyone, None
    everyone.before_connecting(phases)
    involved = [c for c in fleet.clusters if rolling.hosts_of([c]) & selected]
    planner = everyone.planner(rolling.hosts_of(involved) | balancers)
    changing, balancers_change = _changing(everyone, planner, involved, balancers, phases)
    keyless: frozenset[str] = frozenset()
    if fleet.front is not None:  # a host's tunnel names peers outside its own step: their keys travel along
        from .roles.tunnel.role import PublicKeys  # role modules load with the run that uses them

        keys = planner.handoffs(PublicKeys)
        given = (*given, keys)
        keyless = frozenset(c.head for c in involved if c.api_underlay and not keys.by_host.get(c.head))
    rolled = Fleet(tuple(changing), fleet.balancers)
    return everyone, Rolling(connect(only=balancers, given=given), rolled, balancers_change, given, keyless)


def _changing(
    everyone: Runner, planner: Runner, clusters: list[Cluster], balancers: frozenset[str], phases: list[Phase]
) -> tuple[list[Cluster], bool]:
    """The clusters a run would change (or cannot tell: a host unreachable or failing), and whether the balancers
    would, from one --check pass (`planner`) over all of their hosts at once: the others need not leave the
    rotation (nor run again), and what the pass found on them is their result."""
    hosts = rolling.hosts_of(clusters) | balancers
    planner.play(phases)
    for host, count in planner.round_trips.items():
        everyone.round_trips[host] += count
    moved = {r.host for r in planner.output.results if r.status in ("changed", "failed", "unreachable")}
    if planner.gate_failed:
        moved |= hosts
    changing = [c for c in clusters if rolling.hosts_of([c]) & moved]
    balancers_change = bool(balancers & moved)
    settled = hosts - rolling.hosts_of(changing) - (balancers if balancers_change else frozenset())
    for result in planner.output.results:
        if result.host in settled:
            everyone.output.record(result)
    return changing, balancers_change


def roll_back_upgrade(connect: Connect, output: Output, hosts: list[str], only: frozenset[str] | None = None) -> None:
    """A provision failed after hosts switched release: every switched host back to its previous one."""
    failed = [r for r in output.results if r.status in ("failed", "unreachable")]
    what = "; ".join(f"{r.host}: {r.role}: {r.operation}: {r.reason}" for r in failed[:5]) or "see above"
    output.say(f"\nupgrade failed ({what}); rolling {', '.join(hosts)} back to the previous release")
    from .roles.rollback.role import Only

    runner = connect(given=(Only(frozenset(hosts)),), only=only)
    back = runner.play(playbooks.rollback())
    show_worker_journals(runner, output)
    output.say(
        "rollback: every switched host is back on its previous release and serving"
        if back == 0
        else f"rollback failed too (exit {back}): see the results above; `invoke status` shows each host"
    )


def deploy(connect: Connect, source: Model, serial: int = 1) -> int:
    """Put the resolved model on the heads and (re)start llama-server on it; say when it served. Behind balancers,
    the clusters `serial` at a time out of rotation (see rolling.py)."""
    from .roles.head.role import Serving
    from .roles.model.source import Deploying

    started = time.monotonic()
    phases = playbooks.deploy()
    everyone, plan = _rolling_plan(connect, phases, Deploying(source))
    runners: list[Runner] = []

    def step(runner: Runner) -> int:
        runners.append(runner)
        code = runner.play(phases)
        show_worker_journals(runner, runner.output)
        return code

    if plan is None:
        code = step(everyone)
    else:
        runners += [everyone, plan.balancers]  # everyone holds the --check pass's round trips
        code = rolling.roll(
            plan.balancers,
            plan.fleet,
            serial,
            lambda hosts: step(connect(given=plan.given, only=hosts)),
            f"deploying {source.name}",
            wait_all=True,
        )
    runner = runners[-1]
    if code == 0 and not runner.options.check:
        ready = {h: s for r in runners for h, s in r.handoffs(Serving).ready_seconds.items()}
        serving = "".join(f"; {host} served it {seconds:.1f} s after its restart" for host, seconds in ready.items())
        runner.output.say(
            f"deployed {source.name} (sha256 {source.sha256[:12]}) in {time.monotonic() - started:.1f} s{serving}"
        )
    return finish_all(runners, code)


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


def finish_all(runners: list[Runner], code: int | None = None) -> int:
    """finish() for the runs of one task (the steps of a roll): round trips added up; the exit code given, else
    the first failed run's."""
    trips: dict[str, int] = {}
    for runner in runners:
        for host, count in runner.round_trips.items():
            trips[host] = trips.get(host, 0) + count
    if code is None:
        code = next((runner.exit_code() for runner in runners if runner.exit_code()), 0)
    runners[-1].output.finish(code, {"round_trips": trips})
    return code
