"""One host's session in a run: its connection, the facts known about it, its notifications and its health."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .facts import Fact
from .operations.base import Facts
from .ssh import HostConnection


@dataclass
class HostSession:
    """What a run knows about one host while it works on it."""

    connection: HostConnection
    failed: bool = False
    unreachable: bool = False
    _read: dict[tuple, Any] = field(default_factory=dict)  # read since the host last changed
    asked: dict[str, None] = field(default_factory=dict)  # the command of every fact asked for, in order
    _settled: dict[str, Facts] = field(default_factory=dict)  # role -> its facts, when it changed nothing
    _notified: list[str] = field(default_factory=list)  # handlers notified on this host, not yet run

    @property
    def _static(self) -> dict[tuple, Any]:
        """Facts true for as long as the connection lives (the OS): shared with the process's later runs."""
        return self.connection.static_facts

    @property
    def _outputs(self) -> dict[str, list[str]]:
        """Fact command -> output, read since the host last changed (ahead, or by this process's earlier runs)."""
        return self.connection.fact_outputs

    @property
    def healthy(self) -> bool:
        return not (self.failed or self.unreachable)

    # -- facts -------------------------------------------------------------------
    def known(self) -> dict[tuple, Any]:
        """Every fact value still true: the static ones and those read since the last change."""
        return {**self._read, **self._static}

    def missing(self, facts: Iterable[Fact]) -> list[Fact]:
        """The facts not known yet, each once; a fact whose command's output is at hand is parsed from it.

        A read ahead still running on the connection is waited for first (its connection error raised here).
        """
        self.connection.caught_up()
        known = self.known()
        todo: dict[tuple, Fact] = {}
        for fact in facts:
            command = fact.command()
            self.asked[command] = None
            self.connection.asked[command] = None
            if fact.key in known or fact.key in todo:
                continue
            if command in self._outputs and self._parsed(fact, command):
                continue
            todo[fact.key] = fact
        return list(todo.values())

    def _parsed(self, fact: Fact, command: str) -> bool:
        try:
            value = fact.process(self._outputs[command])
        except Exception:  # noqa: BLE001 - output the fact cannot parse: it is read again, as if never read
            return False
        self.learned([fact], {fact.key: value})
        return True

    def read(self, outputs: Mapping[str, list[str]]) -> None:
        """Output of fact commands just read (and of remembered ones, ahead): facts asked later are parsed from it."""
        self._outputs.update(outputs)

    def has_output(self, command: str) -> bool:
        return command in self._outputs

    def learned(self, facts: list[Fact], values: Mapping[tuple, Any]) -> None:
        """Facts just read: true until the host changes (static ones for the whole run)."""
        self._read.update(values)
        self._static.update({f.key: values[f.key] for f in facts if f.static})

    def changed(self) -> None:
        """Something may have changed on the host: what was read about it must be read again."""
        self._read.clear()
        self._outputs.clear()

    def settle(self, role: str, facts: Facts) -> None:
        """A role read these facts; they stay true for as long as it changes nothing."""
        self._settled[role] = facts

    def unsettle(self, role: str) -> None:
        self._settled.pop(role, None)

    def settled(self, role: str) -> Facts | None:
        return self._settled.get(role)

    # -- handlers ----------------------------------------------------------------
    def notify(self, names: Iterable[str]) -> None:
        self._notified.extend(n for n in names if n not in self._notified)

    def withdraw(self, names: Iterable[str]) -> None:
        """Handlers whose work a change did anyway (a start after the new unit file): no longer pending."""
        self._notified[:] = [n for n in self._notified if n not in names]

    def take_due(self, handlers: Iterable[str]) -> list[str]:
        """The handlers among `handlers` notified on this host, now no longer pending."""
        due = [h for h in handlers if h in self._notified]
        self._notified[:] = [n for n in self._notified if n not in due]
        return due
