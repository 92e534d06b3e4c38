"""What a role sees of a run: the inventory, the clusters, typed hand-offs, a small API; and one host's context.

Roles get this view, never the Runner: a role's hooks are called as `hook(run, hosts)` and its
operations see the view as `ctx.run`. Everything here either reads the run's inputs or does
controller-side work through the runner's own paths (one connection per host, counted round trips,
recorded results), so check mode and the recap stay one code path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import templating
from .cluster import Cluster, Fleet, fleet
from .errors import LlamafleetError
from .facts import Fact
from .inventory import Host, Inventory
from .operations.base import Facts, Operation
from .output import OpResult, Output

T = TypeVar("T")


class Handoffs:
    """Values one step of a run hands to later ones (and to the task), each kept under its own type.

    A hand-off is a small dataclass defined by the module that owns it (role llama_cpp's `Targets`,
    role head's `Serving`...); every field has a default, so a reader gets the empty value when the
    writer did not run. The task gives its parameters the same way (deploy's model).
    """

    def __init__(self, *given: Any) -> None:
        self._values: dict[type, Any] = {type(value): value for value in given}
        self._lock = threading.Lock()

    def __call__(self, kind: type[T]) -> T:
        """This run's value of `kind`, made empty on first use."""
        with self._lock:
            if kind not in self._values:
                self._values[kind] = kind()
            return self._values[kind]


class Engine(Protocol):
    """What a Run asks of the engine that plays it (runner.Runner): the seam between roles and execution."""

    inventory: Inventory
    hosts: list[Host]
    options: _Options
    handoffs: Handoffs
    output: Output

    def os(self, host: Host) -> dict[str, str]: ...
    def gather(self, host: Host, facts: list[Fact]) -> Facts: ...
    def settled_facts(self, host: Host, role: str) -> Facts | None: ...
    def remote(self, host: Host, command: str, **kwargs: Any) -> Any: ...
    def connection(self, host: Host) -> Any: ...
    def converge(self, host: Host, role: str, operations: list[Operation]) -> list[str] | None: ...
    def each_host(self, hosts: list[Host], work: Callable[[Host], None]) -> None: ...


class _Options(Protocol):
    check: bool  # --check: read facts, change nothing


class Run:
    """One run's inputs and the controller-side calls a role may make."""

    def __init__(self, runner: Engine) -> None:
        self._runner = runner
        self._fleet: Fleet | None = None

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

    def handoff(self, kind: type[T]) -> T:
        """The run's value of a typed hand-off (the task's parameters among them): see Handoffs."""
        return self._runner.handoffs(kind)

    @property
    def fleet(self) -> Fleet:
        """The clusters (head, workers, RPC endpoints, API clients) and balancers, computed and warned about once."""
        if self._fleet is None:
            found = fleet(self._runner.inventory)
            for warning in found.warnings:
                self.say(f"warning: {warning}")
            self._fleet = found
        return self._fleet

    def cluster(self, host: Host) -> Cluster:
        """The cluster of a head or worker."""
        found = self.fleet.of(host.name)
        if found is None:
            raise LlamafleetError(f"{host.name}: not a head or worker of any cluster")
        return found

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


@dataclass
class HostContext:
    """What a role sees while planning one host: its variables, static facts and the run's view."""

    host: Host
    os: dict[str, str]
    run: Run
    role: str
    template_dir: Path

    @property
    def vars(self) -> dict[str, Any]:
        return self.host.vars

    @property
    def name(self) -> str:
        return self.host.name

    def render(self, template: str, **extra: Any) -> str:
        """Render the role's template (or the project's shared one) with the host's vars."""
        context = {
            **self.vars,
            "inventory_hostname": self.name,
            "group_names": self.host.groups,
            "os": self.os,
            **extra,
        }
        import jinja2  # with the run's first template, not with this module

        try:
            return templating.render(self.template_dir, template, context)
        except jinja2.TemplateError as exc:
            raise LlamafleetError(f"{self.name}: template {template} of role {self.role}: {exc}") from None
