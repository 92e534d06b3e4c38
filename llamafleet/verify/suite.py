"""One run of the verify suite: the inventory, what it promises, a connection per host, the facts read once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llamafleet import inventory as inventory_mod
from llamafleet.inventory import Host, Inventory
from llamafleet.ssh import HostConnection

from .expected import Expectations
from .gather import Gathered, Observed, gather_all

if TYPE_CHECKING:
    from llamafleet.vault import VaultSecrets


@dataclass
class Suite:
    """One run of the suite: the inventory, what it promises, a connection per host, the facts read once."""

    inventory: Inventory
    hosts: list[Host]
    expect: Expectations
    connections: dict[str, HostConnection] = field(default_factory=dict)
    testinfra: dict[str, Any] = field(default_factory=dict)  # host name -> testinfra Host over its connection
    started: float = field(default_factory=time.monotonic)
    _gathered: Gathered | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(
        cls,
        path: str | list[str] | None,
        limit: str | None,
        extra_vars: list[str] | None,
        vault_secrets: VaultSecrets | None = None,
    ) -> Suite:
        inv = inventory_mod.load(
            path or inventory_mod.default_path(),
            inventory_mod.parse_extra_vars(extra_vars, vault_secrets),
            vault_secrets=vault_secrets,
        )
        return cls.of(inv, limit)

    @classmethod
    def of(cls, inv: Inventory, limit: str | None) -> Suite:
        """The suite of an inventory loaded already (`invoke verify` loads it as every task does)."""
        hosts = inv.select(limit)
        suite = cls(inv, hosts, Expectations(inv))
        base = inv.path.parent
        suite.connections = {h.name: HostConnection(h, base_dir=base) for h in hosts}
        return suite

    def names(self, wanted: list[str] | None) -> list[str]:
        """Selected hosts that are in (or are) the named groups or hosts (`!group`: minus that group's); all
        selected hosts when None."""
        if wanted is None:
            return [h.name for h in self.hosts]
        groups = self.inventory.groups
        members = {
            n for w in wanted if not w.startswith("!") for n in groups.get(w, [w] if w in self.inventory.hosts else [])
        }
        members -= {n for w in wanted if w.startswith("!") for n in groups.get(w[1:], [])}
        return [h.name for h in self.hosts if h.name in members]

    def start(self) -> None:
        """Read the hosts in the background now, while pytest starts and collects (the checks wait for it)."""
        threading.Thread(target=lambda: self.gathered, daemon=True).start()

    @property
    def gathered(self) -> Gathered:
        with self._lock:
            if self._gathered is None:
                self._gathered = gather_all(self.connections, self.expect)
            return self._gathered

    def observed(self, name: str) -> Observed:
        return self.gathered.hosts[name]

    def commands(self) -> dict[str, int]:
        """SSH commands per host: the fact batch plus any a user's test ran through testinfra."""
        gathered = self._gathered.hosts if self._gathered else {}
        extra = {name: host.backend.commands for name, host in self.testinfra.items()}
        return {
            h.name: (gathered[h.name].commands if h.name in gathered else 0) + extra.get(h.name, 0) for h in self.hosts
        }

    def testinfra_host(self, name: str) -> Any:
        from .backend import engine_host  # testinfra only when a test asks for `host`

        if name not in self.testinfra:
            self.testinfra[name] = engine_host(self.connections[name])
        return self.testinfra[name]

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
