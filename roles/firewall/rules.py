"""Which rules each host gets, from the cluster view: a worker's RPC port from the head, the API from its clients."""

from __future__ import annotations

from llamafleet.cluster import Cluster
from llamafleet.inventory import Inventory
from llamafleet.roles.head import settings as head_settings

from . import ruleset as _ruleset

LOOPBACK = ("127.0.0.1", "::1")


def rulesets(view: Cluster, inventory: Inventory) -> dict[str, object]:
    """host name -> Ruleset for every host of the cluster (other hosts: SSH only)."""
    found = {}
    for host in inventory.hosts.values():
        rules = []
        if host.name in {worker.name for worker in view.workers}:
            worker = view.worker(host.name)
            rules.append(_ruleset.Rule(worker.port, (view.head_address,), "rpc"))
        if host.name == view.head:  # loopback too: the head probes its own /health
            sources = (*view.api_allow, *LOOPBACK)
            api_port = head_settings.settings(host, str(inventory.path)).api_port
            rules.append(_ruleset.Rule(api_port, sources, "api"))
        found[host.name] = _ruleset.Ruleset(rules=tuple(rules), ssh_port=host.connection.port)
    return found
