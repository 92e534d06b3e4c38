"""The runner: plays phases of roles over hosts in a bounded pool, plan then apply, handlers, recap."""

from __future__ import annotations

import dataclasses
import difflib
import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import controller_files, factmemory, progress
from .errors import CommandError, ConnectError, GateError, InventoryError, LlamafleetError, OperationError
from .facts import Fact, OsRelease, batch_script, from_command, split_batch
from .inventory import Host, Inventory
from .operations.base import Change, Facts, Feed, Operation, Shell, Step, Transfer, Upload
from .output import OpResult, Output
from .phases import Phase
from .roles import Role
from .run import Handoffs, HostContext, Run
from .session import HostSession
from .shell import quote
from .ssh import ConnectionPool, HostConnection

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_GATE = 0, 1, 3, 4
DIFF_LIMIT = 256 * 1024


@dataclass
class RunOptions:
    """The flags every task shares."""

    check: bool = False
    diff: bool = False
    forks: int = 10
    limit: str | None = None
    accept_new_host_keys: bool = False


class Runner:
    """Plays phases of roles over an inventory's hosts, one connection and one session per host for the whole run."""

    def __init__(
        self,
        inventory: Inventory,
        options: RunOptions,
        output: Output,
        pool: ConnectionPool | None = None,
        given: tuple[Any, ...] = (),
        only: frozenset[str] | None = None,
    ) -> None:
        """`pool`: connections shared with the process's other runs (it closes them); without it, this run's own.

        `given`: the task's parameters, typed hand-offs the roles read (see run.Handoffs). `only`: the run's
        hosts narrowed further than --limit (one step of a rolling change).
        """
        self.inventory = inventory
        self.options = options
        self.output = output
        self.hosts = [h for h in inventory.select(options.limit) if only is None or h.name in only]
        if options.accept_new_host_keys:
            controller_files.check_new_known_hosts(inventory.path, self.hosts)
        self._pool = pool
        base = inventory.path.parent
        connect = HostConnection if pool is None else pool.connection
        self._sessions = {
            h.name: HostSession(connect(h, accept_new_host_keys=options.accept_new_host_keys, base_dir=base))
            for h in self.hosts
        }
        self.gate_failed = False
        self.handoffs = Handoffs(*given)
        self._given, self._only = given, only
        self.handler_names: set[str] = set()  # every handler of the roles of this run
        self.round_trips: dict[str, int] = {h.name: 0 for h in self.hosts}
        self._count_lock = threading.Lock()
        self.run = Run(self)  # this run, as its roles see it
        for host in self.hosts:
            output.add_host(host.name)
            connection = self.connection(host)  # its read ahead, if any, counts as this run's first round trip
            self.round_trips[host.name] += connection.ahead_trips
            connection.ahead_trips = 0

    # -- connections and facts -------------------------------------------------
    def connection(self, host: Host) -> HostConnection:
        return self._sessions[host.name].connection

    def remote(self, host: Host, command: str, **kwargs) -> Any:
        """Run one command on a host, counting the round trip; it may change the host, so facts are read anew."""
        self._sessions[host.name].changed()
        return self._command(host, command, **kwargs)

    def _command(self, host: Host, command: str, **kwargs) -> Any:
        self._count(host)
        return self.connection(host).run(command, **kwargs)

    def _count(self, host: Host) -> None:
        with self._count_lock:
            self.round_trips[host.name] += 1

    def gather(self, host: Host, facts: list[Fact]) -> Facts:
        """Every fact a role needs, in one round trip; a fact read since the host last changed is not read again.

        Static facts (the OS) are kept for the whole run.
        """
        session = self._sessions[host.name]
        todo = session.missing(facts)
        if todo:
            session.learned(todo, self._batch(host, todo))
        return Facts(session.known())

    def _batch(self, host: Host, facts: list[Fact], ahead: list[Fact] | None = None) -> dict[tuple, Any]:
        """Read `facts` (and `ahead`) on a host in one round trip: key -> parsed value of each of `facts`.

        The output of all is kept (see HostSession): a fact read ahead is parsed when one asks for it.
        """
        batch = [*facts, *(ahead or ())]
        script, token = batch_script(batch)
        result = self._command(host, script)
        try:
            outputs = split_batch(batch, result.stdout, token)
        except ValueError as exc:
            raise CommandError(host.name, "gather facts", result.status, f"{exc}\n{result.stderr}") from None
        self._sessions[host.name].read({fact.command(): lines for fact, lines in outputs})
        return {fact.key: fact.process(lines) for fact, lines in outputs[: len(facts)]}

    def prefetch(self, phases: list[Phase], memory: Path | None = None) -> None:
        """First contact with every host, one batch: the OS, the facts the run's roles name (prefetch), and
        every fact the previous run of these phases read there (factmemory).

        They serve later phases for as long as nothing changed on the host.
        """
        wanted: dict[tuple, Fact] = {OsRelease().key: OsRelease()}
        involved: set[str] = set()
        for phase in phases:
            involved.update(h.name for h in self.phase_hosts(phase))
            for role in phase.roles:
                wanted.update({f.key: f for f in role.prefetch})
        hosts = [h for h in self.hosts if h.name in involved]  # deploy touches the head only
        remembered = factmemory.recall(memory) if memory else {}
        self.each_host(hosts, lambda host: self._first_batch(host, list(wanted.values()), remembered.get(host.name)))

    def _first_batch(self, host: Host, wanted: list[Fact], remembered: list[str] | None) -> None:
        session = self._sessions[host.name]
        todo = session.missing(wanted)
        asked = {f.command() for f in todo}
        fresh = (c for c in dict.fromkeys(remembered or ()) if c not in asked and not session.has_output(c))
        ahead = [from_command(c) for c in fresh]
        if todo or ahead:
            session.learned(todo, self._batch(host, todo, ahead))

    def remember_facts(self, memory: Path) -> None:
        """The commands of the facts this run asked for on each host, for the next run's first batch."""
        asked = {name: list(session.asked) for name, session in self._sessions.items() if session.asked}
        factmemory.remember(memory, asked)
        if self._pool is not None and self._pool.memory is not None:
            factmemory.remember(self._pool.memory, self._pool.asked())

    def settled_facts(self, host: Host, role: str) -> Facts | None:
        """The facts a role read on a host, if it then changed nothing there (so they are still true)."""
        return self._sessions[host.name].settled(role)

    def os(self, host: Host) -> dict[str, str]:
        fact = OsRelease()
        return self.gather(host, [fact])[fact]

    # -- phases ----------------------------------------------------------------
    def healthy(self, hosts: list[Host]) -> list[Host]:
        return [h for h in hosts if self._sessions[h.name].healthy]

    def phase_hosts(self, phase: Phase) -> list[Host]:
        included, *excluded = phase.group.split(":!")
        members = set(self.inventory.groups.get(included, []))
        members.difference_update(*(self.inventory.groups.get(group, []) for group in excluded))
        return [h for h in self.hosts if h.name in members]

    def play(self, phases: list[Phase]) -> int:
        """Check every role's settings, then its controller-side setup (no connection yet), then the phases."""
        self.before_connecting(phases)
        if self.options.check:
            self._say_controller_reads(phases)
        memory = factmemory.location(self.inventory.path, playbook_signature(phases))
        try:
            self.prefetch(phases, memory)
            for phase in phases:
                if not self.run_phase(phase):
                    break
        finally:
            self.remember_facts(memory)
            self.close()
        return self.exit_code()

    def planner(self, only: frozenset[str]) -> Runner:
        """A --check twin of this runner over those of its hosts in `only` (same connections and task parameters)
        with a silent output of its own: what it plays says what this one would change there."""
        options = dataclasses.replace(self.options, check=True)
        quiet = Output(json_mode=True, check=True, stream=io.StringIO())
        return Runner(self.inventory, options, quiet, self._pool, self._given, only & {h.name for h in self.hosts})

    def before_connecting(self, phases: list[Phase]) -> None:
        """Every role's validate hook on its phase's hosts, then every setup hook: nothing connects yet."""
        for phase in phases:
            for role in phase.roles:
                self.handler_names.update(role.handlers)
        for phase in phases:  # every role validated before any role acts
            for role in phase.roles:
                self._before_connecting(role.validate, phase)
        for phase in phases:
            for role in phase.roles:
                self._before_connecting(role.setup, phase)

    def _before_connecting(self, call: Callable[[Run, list[Host]], None] | None, phase: Phase) -> None:
        """A role's validate or setup hook on the phase's hosts; its InventoryError names the inventory file."""
        if call is None:
            return
        try:
            call(self.run, self.phase_hosts(phase))
        except InventoryError as exc:
            if exc.file:
                raise
            raise InventoryError(str(exc), file=str(self.inventory.path)) from None

    def _say_controller_reads(self, phases: list[Phase]) -> None:
        """--check: the controller files the connections will read (the roles name their own as they validate)."""
        involved = {h.name for phase in phases for h in self.phase_hosts(phase)}
        connections = [h.connection for h in self.hosts if h.name in involved]
        for path, variable in controller_files.connection_reads(connections, self.inventory.path.parent):
            self.output.say(controller_files.reads_line(path, variable))

    def run_phase(self, phase: Phase) -> bool:
        """Apply a phase's roles; False when the run must not go on."""
        if phase.needs_all and not all(s.healthy for s in self._sessions.values()):
            self.output.say(f"phase {phase.name}: not started, an earlier phase failed on some host")
            return False
        hosts = self.healthy(self.phase_hosts(phase))
        if not hosts:
            return True
        self.output.say(f"\n== {phase.name}: {', '.join(h.name for h in hosts)}")
        for role in phase.roles:
            if role.prepare is not None and not self._prepare(role, hosts):
                return False
            hosts = self.healthy(hosts)
            self.each_host(hosts, lambda host, r=role: self.apply_role(host, r))
            hosts = self.healthy(hosts)
            if role.gate is not None and not self.options.check and not self._gate(role, hosts):
                return False
        return True

    def _prepare(self, role: Role, hosts: list[Host]) -> bool:
        name = role.name
        try:
            role.prepare(self.run, hosts)
        except GateError as exc:
            self.output.say(f"gate {name}: {exc}")
            self.gate_failed = True
            return False
        except ConnectError as exc:
            # What prepare() hands the other hosts is incomplete now: stop the phase, not just one host.
            self.mark_unreachable(exc.host, name, str(exc))
            self.output.say(f"{name}: {exc.host} became unreachable while preparing; phase {name} stopped")
            return False
        except LlamafleetError as exc:
            self.output.say(f"{name}: {exc}")
            for host in hosts:
                self._sessions[host.name].failed = True
            return False
        return True

    def _gate(self, role: Role, hosts: list[Host]) -> bool:
        problems = role.gate(self.run, hosts)
        for problem in problems:
            self.output.say(f"gate {role.name}: {problem}")
        self.gate_failed = self.gate_failed or bool(problems)
        return not problems

    def each_host(self, hosts: list[Host], work) -> None:
        """Call work(host) for each host in a pool of --forks threads; errors fail that host only."""

        def guarded(host: Host) -> None:
            try:
                work(host)
            except ConnectError as exc:
                self.mark_unreachable(host.name, "connect", str(exc))
            except LlamafleetError as exc:
                self.mark_failed(host.name, "run", str(exc))

        with ThreadPoolExecutor(max_workers=max(1, self.options.forks)) as pool:
            list(pool.map(guarded, hosts))

    def mark_unreachable(self, host: str, role: str, message: str) -> None:
        self._sessions[host].unreachable = True
        self.output.record(OpResult(host, role, "connect", "unreachable", message))

    def mark_failed(self, host: str, role: str, message: str) -> None:
        self._sessions[host].failed = True
        self.output.record(OpResult(host, role, "error", "failed", message))

    # -- one role on one host --------------------------------------------------
    def context(self, host: Host, role: Role) -> HostContext:
        return HostContext(host=host, os=self.os(host), run=self.run, role=role.name, template_dir=role.template_dir)

    def apply_role(self, host: Host, role: Role) -> None:
        """Converge a role's operations, then the handlers of this role that anything notified.

        A notification waits on the host until a role that handles it runs (a new llama.cpp release
        notifies the worker's and the head's restarts, handled by their roles later in the run).
        Handlers are operations like any other: they plan from facts.
        """
        ctx = self.context(host, role)
        operations = list(role.operations(ctx))
        self._check_notify(role.name, operations)
        if not self.converge(host, role.name, operations):
            return
        due = self._sessions[host.name].take_due(role.handlers)
        if due:
            self.converge(host, role.name, [role.handlers[h](ctx) for h in due])

    def _check_notify(self, role: str, operations: list[Operation]) -> None:
        """A notification no role of this run handles is a typo: fail before anything is applied."""
        known = self.handler_names
        for operation in operations:
            unknown = [n for n in operation.notify if n not in known]
            if unknown:
                raise OperationError(
                    f"role {role}: {operation.description} notifies {unknown[0]!r}, which no handler of this run "
                    f"handles (known: {', '.join(sorted(known)) or 'none'})"
                )

    def converge(self, host: Host, role: str, operations: list[Operation]) -> bool:
        """Gather the operations' facts in one round trip, then plan and apply them in order; changes notify
        their handlers on the host.

        False when an operation failed (the rest of the host's operations are skipped, as the host is
        now in an unknown state).
        """
        session = self._sessions[host.name]
        facts = self.gather(host, [f for op in operations for f in op.facts])
        session.settle(role, facts)
        for index, operation in enumerate(operations):
            status = self.apply(host, role, operation, facts)
            if status == "failed":
                return False
            if status == "changed":
                session.unsettle(role)
                if not self.options.check:
                    session.changed()
                session.notify(operation.notify)
                if not self.options.check and index + 1 < len(operations):
                    # What was just applied may change what later operations see (a unit file
                    # that now exists): read their facts again. A run with nothing to do never pays this.
                    facts = self.gather(host, [f for op in operations[index + 1 :] for f in op.facts])
        return True

    def apply(self, host: Host, role: str, operation: Operation, facts: Facts) -> str:
        """Plan one operation and, unless --check, apply it; records and returns its status."""
        try:
            plan = operation.plan(facts)
        except LlamafleetError as exc:
            return self._failed(host, role, operation, str(exc), None)
        if not isinstance(plan, Change):
            self.output.record(OpResult(host.name, role, operation.description, "ok", plan.reason))
            return "ok"
        # A unit started by this change runs what was written before it: its pending restart has nothing to do.
        self._sessions[host.name].withdraw(plan.done)
        steps = [_describe(s) for s in plan.steps]
        diff = self.diff(host, plan) if self.options.diff else None
        if not self.options.check:
            try:
                for step in plan.steps:
                    self.execute(host, step)
            except CommandError as exc:
                error = {"command": exc.command, "status": exc.status, "output": exc.output[-4000:]}
                return self._failed(host, role, operation, f"exit {exc.status}: {exc.command[:200]}", error)
            for callback in operation.after:
                callback()
        self.output.record(OpResult(host.name, role, operation.description, "changed", plan.reason, steps, diff))
        return "changed"

    def _failed(self, host: Host, role: str, operation: Operation, reason: str, error: dict | None) -> str:
        self._sessions[host.name].failed = True
        self.output.record(OpResult(host.name, role, operation.description, "failed", reason, error=error))
        return "failed"

    def execute(self, host: Host, step: Step) -> None:
        conn = self.connection(host)
        self._count(host)
        if isinstance(step, Transfer):
            with progress.Sending(f"{host.name}: {step.source.name}", step.size - step.offset) as meter:
                conn.put_resumable(step, meter.sent)
        elif isinstance(step, Feed):
            total = sum(size for _, size in step.ranges)
            with progress.Sending(f"{host.name}: cache entries from {step.source.name}", total) as meter:
                conn.feed(step.command, step.source, step.ranges, meter.sent)
        elif isinstance(step, Upload):
            conn.put(step.content, step.path, mode=step.mode, owner=step.owner, group=step.group, sha256=step.sha256)
        elif step.progress:
            self._execute_long(host, conn, step)
        else:
            conn.check(step.command)

    def _execute_long(self, host: Host, conn: HostConnection, step: Shell) -> None:
        """A long command with live progress on stderr; its last output lines explain a failure."""
        sink = progress.CommandProgress(f"{host.name}: {step.progress}")
        ok = False
        try:
            conn.check(step.command, stdout=sink)
            ok = True
        except CommandError as exc:
            raise CommandError(exc.host, exc.command, exc.status, sink.tail() + exc.output) from None
        finally:
            sink.close(ok)

    def diff(self, host: Host, plan: Change) -> str | None:
        """Unified diff of a file that would change (reads the current file only when it differs)."""
        if not plan.diff_path:
            return None
        if plan.secret:
            return f"--- {plan.diff_path}\n+++ {plan.diff_path}\n(content hidden: secret)\n"
        result = self.remote(host, quote("head -c %s %s 2>/dev/null", DIFF_LIMIT, plan.diff_path))
        old = result.stdout if result.ok else ""
        lines = difflib.unified_diff(
            old.splitlines(True),
            (plan.new_text or "").splitlines(True),
            f"{host.name}:{plan.diff_path}",
            f"{host.name}:{plan.diff_path} (new)",
        )
        return "".join(lines) or None

    # -- the end -----------------------------------------------------------------
    def exit_code(self) -> int:
        sessions = self._sessions.values()
        if any(s.failed for s in sessions):
            return EXIT_FAILED
        if any(s.unreachable for s in sessions):
            return EXIT_UNREACHABLE
        if self.gate_failed:
            return EXIT_GATE
        return EXIT_OK

    def close(self) -> None:
        if self._pool is not None:
            return  # the pool's connections serve the process's next run, and the pool closes them
        for session in self._sessions.values():
            session.connection.close()


def read_ahead(pool: ConnectionPool, inventory: Inventory, options: RunOptions, command_line: list[str]) -> None:
    """Start the process's first round trip to each host now, in the background: the facts the last process of the
    same command line asked for there (factmemory.of_command_line), read while the task still prepares (loads and
    checks its roles). Once per process (its later tasks find their facts read); not on first contact
    (--accept-new-host-keys checks known_hosts before anything connects). The pool then keeps what this process
    asks for, for the next one (remember_facts)."""
    if options.accept_new_host_keys or pool.memory is not None:
        return
    pool.memory = factmemory.of_command_line(inventory.path, command_line)
    remembered = factmemory.recall(pool.memory)
    base, slots = inventory.path.parent, threading.Semaphore(max(1, options.forks))
    for host in inventory.select(options.limit):
        if remembered.get(host.name):
            pool.connection(host, accept_new_host_keys=False, base_dir=base).read_ahead(remembered[host.name], slots)


def playbook_signature(phases: list[Phase]) -> str:
    """What makes two runs the same playbook: their phases, in order, with their roles and hosts' group."""
    return " ".join(f"{p.name}:{p.group}:{'+'.join(r.name for r in p.roles)}" for p in phases)


def _describe(step: Step) -> str:
    if isinstance(step, Feed):
        sent = sum(size for _, size in step.ranges)
        return f"{step.command[:120]} < {len(step.ranges)} range(s) of {step.source.name} ({sent} bytes)"
    if isinstance(step, Transfer):
        resumed = f" from byte {step.offset}" if step.offset else ""
        return f"transfer {step.source.name} -> {step.path}{resumed} ({step.size} bytes, via {step.partial})"
    if isinstance(step, Upload):
        source = step.content.name if isinstance(step.content, Path) else f"{len(step.content)} bytes"
        return f"upload {source} -> {step.path} ({step.mode} {step.owner}:{step.group})"
    return step.command
