"""Which rules each host gets, from the clusters: a worker's RPC port from its head, a head's API from its clients
(the balancers, when there are any: through the tunnel, when its cluster has one), a balancer's port from its own
clients, WireGuard's port from the host's cluster and peers."""

from __future__ import annotations

from llamafleet.cluster import Cluster, Fleet
from llamafleet.inventory import Inventory
from llamafleet.roles.head import settings as head_settings

from . import ruleset as _ruleset

LOOPBACK = ("127.0.0.1", "::1")


def _underlay(view: Cluster, host: str) -> str:
    """A head's or worker's own address outside the tunnel."""
    return view.head_host_address if host == view.head else view.worker(host).host_address


def rulesets(fleet: Fleet, inventory: Inventory) -> dict[str, object]:
    """host name -> Ruleset for every host of the inventory (hosts of no cluster and no balancer: SSH only)."""
    found = {}
    balancers = {balancer.name: balancer for balancer in fleet.balancers}
    for host in inventory.hosts.values():
        rules = []
        view = fleet.of(host.name)
        if view is not None and host.name != view.head:
            worker = view.worker(host.name)
            interface = view.tunnel.interface if view.tunnel else None  # head_address is then its tunnel address
            rules.append(_ruleset.Rule(worker.port, (view.head_address,), "rpc", interface=interface))
        links = fleet.links(host.name)
        if links is not None:  # WireGuard's packets from the cluster's own hosts (and the host's peers) only
            own = _underlay(view, host.name) if view is not None else fleet.balancer(host.name).address
            cluster = view.addresses if view is not None else ()
            peers = tuple(dict.fromkeys(a for a in (*cluster, *(p.endpoint for p in links.peers)) if a != own))
            rules.append(_ruleset.Rule(links.port, peers, "tunnel", proto="udp"))
        if view is not None and host.name == view.head:  # loopback too: the head probes its own /health
            sources = (*view.api_allow, *LOOPBACK)
            api_port = head_settings.settings(host, str(inventory.path)).api_port
            rules.append(_ruleset.Rule(api_port, sources, "api"))
        if host.name in balancers:  # loopback too: verify asks the endpoint from the balancer itself
            sources = (*balancers[host.name].allow, *LOOPBACK)
            rules.append(_ruleset.Rule(host.vars["balancer_port"], sources, "balancer"))
        found[host.name] = _ruleset.Ruleset(rules=tuple(rules), ssh_port=host.connection.port)
    return found
