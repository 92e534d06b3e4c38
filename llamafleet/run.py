"""What a role sees of a run: the inventory, the cluster, the task's parameters and a small API.

Roles get this view, never the Runner: hooks are `validate(run, hosts)`, `prepare(run, hosts)` and
`gate(run, hosts)`, and operations see it as `ctx.run`. Everything here either reads the run's
inputs or does controller-side work through the runner's own paths (one connection per host,
counted round trips, recorded results), so check mode and the recap stay one code path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster import Cluster, view
from .facts import Fact
from .inventory import Host, Inventory
from .operations.base import Facts, Operation
from .output import OpResult

if TYPE_CHECKING:  # the runner builds this view; the view never builds a runner
    from .runner import Runner


class Run:
    """One run's inputs and the controller-side calls a role may make."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._cluster: Cluster | None = None

    # -- inputs ----------------------------------------------------------------
    @property
    def inventory(self) -> Inventory:
        return self._runner.inventory

    @property
    def hosts(self) -> list[Host]:
        """The hosts of this run (the inventory's, narrowed by --limit), in inventory order."""
        return list(self._runner.hosts)

    @property
    def inventory_file(self) -> str:
        """The inventory's path, for messages that name the file."""
        return str(self._runner.inventory.path)

    @property
    def check(self) -> bool:
        """--check: read facts, change nothing."""
        return self._runner.options.check

    @property
    def params(self) -> Mapping[str, Any]:
        """The task's own parameters (deploy's `model`)."""
        return self._runner.params

    @property
    def shared(self) -> dict[str, Any]:
        """What one role's prepare() hands to its per-host operations, or to a later role."""
        return self._runner.shared

    @property
    def cluster(self) -> Cluster:
        """The cluster view (head, workers, RPC endpoints, API clients), computed and warned about once."""
        if self._cluster is None:
            found = view(self._runner.inventory)
            for warning in found.warnings:
                self.say(f"warning: {warning}")
            self._cluster = found
        return self._cluster

    def group(self, name: str) -> list[str]:
        """Host names of an inventory group, in inventory order."""
        return list(self._runner.inventory.groups.get(name, []))

    # -- controller-side work --------------------------------------------------
    def say(self, text: str) -> None:
        self._runner.output.say(text)

    def record(self, host: Host, role: str, what: str, status: str, reason: str) -> None:
        """Report work done outside operations (a build on one host) in the recap like an operation."""
        self._runner.output.record(OpResult(host.name, role, what, status, reason))

    def os(self, host: Host) -> dict[str, str]:
        return self._runner.os(host)

    def gather(self, host: Host, facts: list[Fact]) -> Facts:
        """Facts in one round trip (static facts are read once per run)."""
        return self._runner.gather(host, facts)

    def settled_facts(self, host: Host, role: str) -> Facts | None:
        """The facts a role read on a host, if it then changed nothing there."""
        return self._runner.settled_facts(host, role)

    def remote(self, host: Host, command: str, **kwargs: Any) -> Any:
        """One command through the host's privilege path (counted as a round trip)."""
        return self._runner.remote(host, command, **kwargs)

    def fetch(self, host: Host, remote_path: str, local: Path, sha256: str | None = None) -> None:
        """Copy a file from a host to the controller through the privilege path, checked by sha256."""
        self._runner.connection(host).get(remote_path, local, sha256=sha256)

    def converge(self, host: Host, role: str, operations: list[Operation]) -> list[str] | None:
        """Plan and apply operations on one host now (None when one failed), as the runner does."""
        return self._runner.converge(host, role, operations)

    def each_host(self, hosts: list[Host], work: Callable[[Host], None]) -> None:
        """work(host) for each host, --forks at a time; an error fails that host only."""
        self._runner.each_host(hosts, work)
