"""Rolling changes behind the balancers: a few clusters at a time leave the balancers' rotation, change, pass their
health checks and come back, while the other clusters serve.

One step of a roll, for the clusters of a batch (`--serial N` of them, inventory order):
1. on every balancer, each head of the batch is set to drain (no new requests) and its requests in flight are
   waited for, at most `balancer_drain_timeout` seconds (then it changes anyway, and says so);
2. the change runs on the batch's hosts only (a deploy's or a provision's phases, with their gates);
3. each head is set ready again and must pass its health checks on every balancer within READY_SECONDS.
A batch that fails stops the roll: its heads stay out of rotation, the clusters before it run the new model or
build, those after it the old one, and the message says which is which.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import haproxy
from .cluster import Cluster, Fleet
from .errors import LlamafleetError, UsageError
from .inventory import Host

if TYPE_CHECKING:
    from .output import Output
    from .runner import Runner

# A head set ready must pass its checks (balancer_check_interval x rise) on every balancer within this time.
READY_SECONDS = 60
POLL_SECONDS = 1.0
# haproxy's first check of a head after it (re)started: within its interval, plus `timeout check` when it times out.
FIRST_CHECK_SECONDS = 15
DRAIN_RAN_OUT = 3  # haproxy.wait_drained's exit status when requests were still in flight at the deadline


def parse_serial(value: object) -> int:
    """--serial: how many clusters change at once, a whole number of at least 1."""
    try:
        count = int(str(value), 10)
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"--serial {value!r}: use a whole number of at least 1 (clusters changed at once)")
    return count


def batches(clusters: Sequence[Cluster], serial: int) -> list[tuple[Cluster, ...]]:
    """The clusters in inventory order, `serial` at a time."""
    return [tuple(clusters[i : i + serial]) for i in range(0, len(clusters), serial)]


def hosts_of(batch: Sequence[Cluster]) -> frozenset[str]:
    return frozenset(name for view in batch for name in (view.head, *(worker.name for worker in view.workers)))


class Rotation:
    """The balancers' HAProxy, asked over SSH through each balancer's privilege path (one runner of its own)."""

    def __init__(self, runner: Runner) -> None:
        from .roles.balancer import settings  # role modules load with the task that uses them

        self.runner = runner
        self.balancers: list[Host] = list(runner.hosts)
        self.drain_seconds = {host.name: settings.settings(host).balancer_drain_timeout for host in self.balancers}

    def _run(self, host: Host, command: str) -> tuple[int, str]:
        result = self.runner.remote(host, command)
        return result.status, (result.stderr or result.stdout).strip()

    def _each(self, work: Callable[[Host], str | None]) -> list[str]:
        """work(balancer) on every balancer at once; the problems, each naming its balancer."""
        problems: list[str] = []
        lock = threading.Lock()

        def guarded(host: Host) -> None:
            try:
                problem = work(host)
            except LlamafleetError as exc:
                problem = str(exc)
            if problem:
                with lock:
                    problems.append(f"{host.name}: {problem}")

        self.runner.each_host(self.balancers, guarded)
        return problems

    def take_out(self, batch: Sequence[Cluster]) -> list[str]:
        """Each head of `batch` drained on every balancer (requests in flight finished, or the timeout passed);
        what the timeouts left behind, as lines to say. LlamafleetError when a balancer could not do it."""
        notes: list[str] = []
        lock = threading.Lock()

        def drain(host: Host) -> str | None:
            for view in batch:
                status, text = self._run(host, haproxy.set_state(view.name, "drain"))
                if status:
                    return f"cannot take {view.head} out of rotation: {text or f'exit {status}'}"
            for view in batch:
                status, text = self._run(host, haproxy.wait_drained(view.name, self.drain_seconds[host.name]))
                if status == DRAIN_RAN_OUT:
                    with lock:
                        notes.append(f"{host.name}: {text}; {view.head} changes anyway")
                elif status:
                    return f"cannot see {view.head}'s requests in flight: {text or f'exit {status}'}"
            return None

        problems = self._each(drain)
        if problems:
            raise LlamafleetError("; ".join(problems))
        return notes

    def servers(self, host: Host) -> dict[str, haproxy.Server]:
        """The heads as one balancer's HAProxy sees them (LlamafleetError when it cannot be asked)."""
        result = self.runner.remote(host, haproxy.show_servers())
        try:
            return haproxy.parse_servers(result.stdout.splitlines())
        except ValueError as exc:
            raise LlamafleetError(f"{host.name}: haproxy's servers unreadable: {exc}") from None

    def serving(self, batch: Sequence[Cluster]) -> set[str]:
        """The clusters of `batch` whose head is in rotation on every balancer now, its last check passed (a head
        haproxy has not checked yet since it started is waited for, at most FIRST_CHECK_SECONDS)."""
        names = [view.name for view in batch]
        found = set(names)  # narrowed by each balancer's thread, under the lock
        lock = threading.Lock()

        def look(host: Host) -> str | None:
            deadline = time.monotonic() + FIRST_CHECK_SECONDS
            servers = self.servers(host)
            while any(not servers[n].checked for n in names if n in servers) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                servers = self.servers(host)
            with lock:
                found.intersection_update(name for name, server in servers.items() if server.serving)
            return None

        problems = self._each(look)
        if problems:
            raise LlamafleetError("; ".join(problems))
        return found

    def put_back(self, batch: Sequence[Cluster], awaited: Sequence[Cluster]) -> None:
        """Each head of `batch` ready again; those `awaited` in rotation on every balancer (their checks passed)
        within READY_SECONDS; LlamafleetError naming the balancer and head otherwise."""

        def ready(host: Host) -> str | None:
            for view in batch:
                status, text = self._run(host, haproxy.set_state(view.name, "ready"))
                if status:
                    return f"cannot put {view.head} back in rotation: {text or f'exit {status}'}"
            deadline = time.monotonic() + READY_SECONDS
            while True:
                servers = self.servers(host)
                waiting = [v for v in awaited if not (v.name in servers and servers[v.name].in_rotation)]
                if not waiting:
                    return None
                if time.monotonic() > deadline:
                    seen = ", ".join(f"{v.head} {servers[v.name].status if v.name in servers else 'unknown'}"
                                     for v in waiting)  # fmt: skip
                    return f"not back in rotation after {READY_SECONDS} s ({seen}): /health does not answer 200 there"
                time.sleep(POLL_SECONDS)

        problems = self._each(ready)
        if problems:
            raise LlamafleetError("; ".join(problems))


def roll(
    balancers: Runner,
    fleet: Fleet,
    serial: int,
    change: Callable[[frozenset[str]], int],
    what: str,
    wait_all: bool,
    serves: Callable[[str], bool] = lambda head: False,
) -> int:
    """Apply `change` (given the host names of one batch, returns an exit code) batch by batch behind the
    balancers (`balancers`: a runner of them alone); the exit code of the first batch that failed, else 0.

    `wait_all`: every head of a batch must be back in rotation before the next (a deploy); else only those that
    were in rotation before or that `serves` (head name) says serve after the change (a provision: a head with no
    model yet is not waited for). `what` names the change.
    """
    output = balancers.output
    rotation = Rotation(balancers)
    order = batches(fleet.clusters, serial)
    for index, batch in enumerate(order):
        names = ", ".join(view.name for view in batch)
        try:
            serving = rotation.serving(batch)
            for note in rotation.take_out(batch):
                output.say(f"rolling: {note}")
        except LlamafleetError as exc:
            return _stopped(output, order, index, f"taking cluster {names} out of rotation failed: {exc}", 4)
        output.say(f"rolling: cluster {names}: out of rotation, {what}")
        code = change(hosts_of(batch))
        if code:
            return _stopped(output, order, index, f"{what} failed on cluster {names} (exit {code})", code)
        try:
            awaited = [view for view in batch if wait_all or view.name in serving or serves(view.head)]
            rotation.put_back(batch, awaited)
        except LlamafleetError as exc:
            return _stopped(output, order, index, f"cluster {names} did not come back: {exc}", 4)
        output.say(f"rolling: cluster {names}: back in rotation")
    return 0


def _stopped(output: Output, order: list[tuple[Cluster, ...]], index: int, why: str, code: int) -> int:
    done = [view.name for batch in order[:index] for view in batch]
    left = [view.name for batch in order[index + 1 :] for view in batch]
    failed = ", ".join(view.name for view in order[index])
    parts = [f"rolling stopped: {why}", f"cluster {failed} stays out of rotation"]
    if done:
        parts.append(f"{', '.join(done)} changed and serve")
    if left:
        parts.append(f"{', '.join(left)} unchanged and serve")
    output.say("; ".join(parts))
    return code
