"""Operations: named by the state they guarantee; they plan from facts and never touch the host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..facts import Fact


@dataclass(frozen=True)
class Shell:
    """A shell command that moves the host towards the wanted state (`progress`: a label for a long one)."""

    command: str
    progress: str | None = None


@dataclass(frozen=True)
class Upload:
    """File content to write atomically at `path` (content never travels on a command line).

    `sha256`, when known ahead (a cached artifact, a model), is what the host must receive: a
    controller file that changed since it was recorded is refused on the host, never installed.
    """

    path: str
    content: bytes | Path
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    sha256: str | None = None


@dataclass(frozen=True)
class Transfer:
    """A large controller file whose sha256 is known, sent resumably: the bytes land in `partial` (same filesystem
    as `path`) from `offset` on, are hashed on the host as they arrive, then renamed to `path` and their sha256
    recorded in `record`."""

    path: str
    source: Path
    partial: str
    record: str
    size: int
    sha256: str
    offset: int = 0
    mode: str = "0440"
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class Feed:
    """A command whose stdin is the given byte ranges (offset, size) of a controller file, in order."""

    command: str
    source: Path
    ranges: tuple[tuple[int, int], ...]


Step = Shell | Upload | Transfer | Feed


@dataclass(frozen=True)
class NoChange:
    """The host is already in the wanted state; `reason` says how we know."""

    reason: str


@dataclass(frozen=True)
class Change:
    """Steps to reach the wanted state, why they are needed, and the file diff to show with --diff."""

    steps: tuple[Step, ...]
    reason: str
    diff_path: str | None = None
    new_text: str | None = None
    secret: bool = False
    done: tuple[str, ...] = ()  # handlers whose work these steps do (a unit started here needs no restart)


Plan = NoChange | Change


class Facts:
    """Fact values gathered for one host, looked up by the Fact object that asked for them."""

    def __init__(self, values: dict[tuple, Any]) -> None:
        self._values = values

    def __getitem__(self, fact: Fact) -> Any:
        return self._values[fact.key]

    def __contains__(self, fact: Fact) -> bool:
        return fact.key in self._values


@dataclass
class Operation:
    """One wanted state on one host: the facts it reads and the planner that compares them."""

    description: str
    facts: list[Fact]
    planner: Callable[[Facts], Plan]
    notify: tuple[str, ...] = ()
    idempotent: bool = True
    sensitive: bool = False
    after: list[Callable[[], None]] = field(default_factory=list)

    def plan(self, facts: Facts) -> Plan:
        return self.planner(facts)


def octal(mode: str | int) -> int:
    """'0644', '644' or 0o644 as an int."""
    return mode if isinstance(mode, int) else int(str(mode), 8)
