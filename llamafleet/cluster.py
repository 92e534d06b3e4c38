"""The clusters as their services see them: each head, its workers' RPC endpoints in order, who may connect,
and the balancers in front of the heads.

An inventory holds one cluster or several (a host's `cluster` variable; inventory.clusters_of partitions them).

Addresses (the RPC protocol has no authentication, so these are what keep strangers out):

- A worker's rpc-server binds `rpc_host`; unset, the worker's `ansible_host` when that is a numeric IPv4
  address (rpc-server takes nothing else: no names, no IPv6). `0.0.0.0` is accepted only when set
  explicitly, with a warning; the head then connects to the worker's `ansible_host`.
- The head's cluster address, the one address the workers admit (`IPAddressAllow=`, firewall), is the
  head's `rpc_host` when set (the address its connections to the workers come from), else (also when
  it is 0.0.0.0) its `ansible_host`; either must be a numeric IPv4 address. `api_host` is not used: it
  is where clients reach the API, often on another network.
- The API admits `api_allow` (the head's value); empty means the cluster's own addresses. With balancers
  (group `balancers`), a head's API admits the balancers only, and a balancer's port admits its own
  `api_allow` (empty: every host of the inventory).
- A balancer reaches a head's API at its `api_host`, or at its cluster address when that is 0.0.0.0; the
  heads admit a balancer by its ansible_host, which must be a numeric IPv4 address.

With `cluster_tunnel: wireguard` (the head's value, which its workers must share) the RPC links run inside a
WireGuard mesh of the cluster: the head gets the first address of `cluster_tunnel_subnet`, each worker the next
ones in inventory order (a worker added at the end renumbers nobody), a worker's rpc-server binds its tunnel
address, the head connects to those and the workers admit the head's tunnel address. The addresses above are
then the underlay: where WireGuard's UDP packets travel and where clients reach the API.

Balancers in front of tunnelled clusters reach those heads' APIs through WireGuard too (the front): each such
head's interface gets a second address from the balancers' `balancer_tunnel_subnet` (the heads its first ones in
cluster order, the balancers its last ones, so neither renumbers the other), and peers with each balancer. The
head's API then admits the balancers' front addresses on the tunnel interface only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from .errors import InventoryError
from .inventory import Host, Inventory, Members, clusters_of
from .yamlfile import printable, shorten

ANY_IPV4 = "0.0.0.0"  # noqa: S104 - named to be recognised and refused, never bound by default


@dataclass(frozen=True)
class Worker:
    """One worker's rpc-server: what it binds and where the head reaches it."""

    name: str
    bind: str  # rpc-server -H
    address: str  # where the head connects: `bind`, or ansible_host when bind is 0.0.0.0 (the tunnel address)
    port: int
    underlay: str = ""  # with a tunnel, the worker's own address that `address` travels over

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def host_address(self) -> str:
        """The worker's address on the cluster network, outside any tunnel."""
        return self.underlay or self.address


TUNNEL_KINDS = ("none", "wireguard")
TUNNEL_INTERFACE = "lfwg0"  # the WireGuard interface on every host of a tunnelled cluster


class _Addressed:
    """Addresses given out of a subnet: `subnet` and `addresses` ((host name, address) pairs)."""

    subnet: str
    addresses: tuple[tuple[str, str], ...]

    def address(self, host: str) -> str:
        return dict(self.addresses)[host]

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen


@dataclass(frozen=True)
class Tunnel(_Addressed):
    """A cluster's WireGuard mesh: its subnet and UDP port, and each host's tunnel address (head first)."""

    subnet: str
    port: int
    addresses: tuple[tuple[str, str], ...]  # (host name, tunnel address) in the order they were given out
    interface: str = TUNNEL_INTERFACE


@dataclass(frozen=True)
class Front(_Addressed):
    """The balancers' WireGuard links to the heads of the tunnelled clusters: each of those hosts' address in
    `subnet`."""

    subnet: str
    addresses: tuple[tuple[str, str], ...]  # (host name, front address): the heads, then the balancers


@dataclass(frozen=True)
class Peer:
    """One WireGuard peer of a host: its name and role, its tunnel address, and where its UDP packets go."""

    name: str
    kind: str  # head, worker or balancer
    address: str
    endpoint: str  # the peer's own address outside the tunnel
    port: int


@dataclass(frozen=True)
class Links:
    """One host's WireGuard interface: its addresses (with prefix length), its UDP port and its peers."""

    interface: str
    addresses: tuple[str, ...]
    port: int
    peers: tuple[Peer, ...]
    kind: str  # the host's own role: head, worker or balancer
    cluster: str | None = None  # None for a balancer


@dataclass(frozen=True)
class Cluster:
    """A read-only view of one cluster, built from an inventory by fleet()."""

    head: str
    head_address: str
    workers: tuple[Worker, ...]
    api_allow: tuple[str, ...]  # addresses and CIDR networks allowed to reach the API
    warnings: tuple[str, ...] = ()
    name: str = "default"
    api_address: str = ""  # where a balancer reaches the head's API
    api_port: int = 0
    tunnel: Tunnel | None = None  # cluster_tunnel: wireguard
    head_underlay: str = ""  # with a tunnel, the head's own address (head_address is then its tunnel address)
    api_underlay: str = ""  # with balancers in the tunnel: where the API is outside it (api_address is the front one)

    @property
    def head_host_address(self) -> str:
        """The head's address on the cluster network, outside any tunnel."""
        return self.head_underlay or self.head_address

    @property
    def api_host_address(self) -> str:
        """Where the head's API answers outside any tunnel."""
        return self.api_underlay or self.api_address

    @property
    def rpc_servers(self) -> str:
        """llama-server's --rpc value: ip:port,ip:port in inventory order ('' without workers)."""
        return ",".join(worker.endpoint for worker in self.workers)

    @property
    def addresses(self) -> tuple[str, ...]:
        """The cluster's own addresses (outside any tunnel): the head's, then each worker's, each once."""
        return tuple(dict.fromkeys([self.head_host_address, *(worker.host_address for worker in self.workers)]))

    def worker(self, name: str) -> Worker:
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise KeyError(name)


@dataclass(frozen=True)
class Balancer:
    """One host of group balancers: the address the heads admit it from, and who may reach its port."""

    name: str
    address: str
    allow: tuple[str, ...]
    tunnel_port: int = 0  # its WireGuard port, when it peers with tunnelled heads


@dataclass(frozen=True)
class Fleet:
    """Every cluster of an inventory, in the order of their heads, and the balancers in front of them."""

    clusters: tuple[Cluster, ...]
    balancers: tuple[Balancer, ...] = ()
    front: Front | None = None  # balancers and at least one tunnelled cluster

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(warning for cluster in self.clusters for warning in cluster.warnings))

    def of(self, host: str) -> Cluster | None:
        """The cluster a head or worker belongs to (None for a balancer or a host of neither group)."""
        for cluster in self.clusters:
            if cluster.head == host or any(worker.name == host for worker in cluster.workers):
                return cluster
        return None

    def balancer(self, name: str) -> Balancer:
        return next(balancer for balancer in self.balancers if balancer.name == name)

    def links(self, host: str) -> Links | None:
        """The host's WireGuard interface: a tunnelled cluster's head peers with its workers (and the balancers),
        a worker with its head, a balancer with every tunnelled head; None for every other host."""
        view, front = self.of(host), self.front
        if view is not None:
            tunnel = view.tunnel
            if tunnel is None:
                return None
            own = [f"{tunnel.address(host)}/{tunnel.prefixlen}"]
            if host != view.head:
                head = Peer(view.head, "head", view.head_address, view.head_host_address, tunnel.port)
                return Links(tunnel.interface, tuple(own), tunnel.port, (head,), "worker", view.name)
            peers = [Peer(w.name, "worker", w.address, w.host_address, tunnel.port) for w in view.workers]
            if front is not None:
                own.append(f"{front.address(host)}/{front.prefixlen}")
                peers += [Peer(b.name, "balancer", front.address(b.name), b.address, b.tunnel_port)
                          for b in self.balancers]  # fmt: skip
            return Links(tunnel.interface, tuple(own), tunnel.port, tuple(peers), "head", view.name)
        if front is None or host not in {balancer.name for balancer in self.balancers}:
            return None
        heads = [
            Peer(c.head, "head", front.address(c.head), c.head_host_address, c.tunnel.port)
            for c in self.clusters
            if c.tunnel is not None
        ]
        own = (f"{front.address(host)}/{front.prefixlen}",)
        return Links(TUNNEL_INTERFACE, own, self.balancer(host).tunnel_port, tuple(heads), "balancer")


def fleet(inventory: Inventory) -> Fleet:
    """The clusters and balancers of a resolved inventory; InventoryError naming file, host and key when an
    address is unusable."""
    file = printable(str(inventory.path))
    members = clusters_of(inventory)
    balancers = tuple(_balancer(inventory.hosts[name], file) for name in inventory.groups.get("balancers", []))
    clusters = tuple(_cluster(each, balancers, file) for each in members.values())
    _check_unique(tuple(worker for cluster in clusters for worker in cluster.workers), file)
    underlay = {address for cluster in clusters for address in cluster.addresses} | {b.address for b in balancers}
    clusters = tuple(_tunnelled(cluster, members[cluster.name], underlay, file) for cluster in clusters)
    if not balancers:
        return Fleet(clusters)
    everyone = tuple(dict.fromkeys(a for c in clusters for a in c.addresses)) + tuple(b.address for b in balancers)
    balancers = tuple(replace(b, allow=b.allow or everyone) for b in balancers)
    front = _front(inventory, clusters, balancers, underlay, file)
    if front is not None:
        clusters = tuple(_fronted(inventory, c, front, balancers, file) for c in clusters)
    return Fleet(clusters, balancers, front)


def view(inventory: Inventory) -> Cluster:
    """The cluster of an inventory that holds one (its first, when it holds several)."""
    return fleet(inventory).clusters[0]


def _cluster(members: Members, balancers: tuple[Balancer, ...], file: str) -> Cluster:
    head = members.head
    warnings: list[str] = []
    workers = tuple(_worker(host, file, warnings) for host in members.workers)
    head_address = _head_address(head, file)
    if balancers:
        allow = tuple(dict.fromkeys(balancer.address for balancer in balancers))
    else:
        allow = _networks(head.vars.get("api_allow"), file, head.name)
    if not allow:
        allow = tuple(dict.fromkeys([head_address, *(worker.address for worker in workers)]))
    api_host = head.vars.get("api_host")
    api_address = api_host if _ipv4(api_host) and api_host != ANY_IPV4 else head_address
    return Cluster(
        head.name,
        head_address,
        workers,
        allow,
        tuple(warnings),
        members.name,
        api_address,
        head.vars["api_port"],
    )


def _tunnelled(view: Cluster, members: Members, underlay: set[str], file: str) -> Cluster:
    """The cluster with its RPC links inside its tunnel (cluster_tunnel: wireguard), or as it is."""
    head = members.head
    kind = head.vars.get("cluster_tunnel", "none")
    for worker in members.workers:
        for key in ("cluster_tunnel", "cluster_tunnel_subnet", "cluster_tunnel_port"):
            if worker.vars.get(key) != head.vars.get(key):
                raise InventoryError(
                    f"{shorten(str(worker.vars.get(key)))!r} differs from head {head.name}'s "
                    f"{shorten(str(head.vars.get(key)))!r}: a cluster's hosts share one tunnel",
                    file=file,
                    where=f"host {worker.name}",
                    key=key,
                )
    if kind == "none":
        return view
    if kind not in TUNNEL_KINDS:
        raise InventoryError(
            f"{shorten(str(kind))!r} is not one of {', '.join(TUNNEL_KINDS)}",
            file=file,
            where=f"host {head.name}",
            key="cluster_tunnel",
        )
    subnet = tunnel_subnet(head.vars.get("cluster_tunnel_subnet"), 1 + len(view.workers), underlay)
    if isinstance(subnet, str):
        raise InventoryError(subnet, file=file, where=f"host {head.name}", key="cluster_tunnel_subnet")
    hosts = subnet.hosts()
    names = [view.head, *(worker.name for worker in view.workers)]
    tunnel = Tunnel(str(subnet), head.vars["cluster_tunnel_port"], tuple((name, str(next(hosts))) for name in names))
    workers = tuple(
        Worker(w.name, tunnel.address(w.name), tunnel.address(w.name), w.port, w.host_address) for w in view.workers
    )
    return replace(
        view, workers=workers, tunnel=tunnel, head_address=tunnel.address(view.head), head_underlay=view.head_address
    )


def _front(
    inventory: Inventory, clusters: tuple[Cluster, ...], balancers: tuple[Balancer, ...], underlay: set[str], file: str
) -> Front | None:
    """The balancers' links to the tunnelled heads, when there are any: addresses from `balancer_tunnel_subnet`
    (the balancers' value, which they must share), which overlaps no cluster's tunnel."""
    heads = [c.head for c in clusters if c.tunnel is not None]
    if not heads:
        return None
    first = inventory.hosts[balancers[0].name]
    key = "balancer_tunnel_subnet"
    for balancer in balancers[1:]:
        value = inventory.hosts[balancer.name].vars.get(key)
        if value != first.vars.get(key):
            raise InventoryError(
                f"{shorten(str(value))!r} differs from balancer {first.name}'s {shorten(str(first.vars.get(key)))!r}: "
                "the balancers share one subnet with the heads",
                file=file,
                where=f"host {balancer.name}",
                key=key,
            )
    who = "each tunnelled head and balancer"
    subnet = tunnel_subnet(first.vars.get(key), len(heads) + len(balancers), underlay, who)
    if isinstance(subnet, ipaddress.IPv4Network):
        tunnels = [c for c in clusters if c.tunnel is not None]
        taken = [c for c in tunnels if ipaddress.IPv4Network(c.tunnel.subnet).overlaps(subnet)]
        if taken:
            subnet = f"{subnet} overlaps cluster {taken[0].name}'s cluster_tunnel_subnet {taken[0].tunnel.subnet}"
    if isinstance(subnet, str):
        raise InventoryError(subnet, file=file, where=f"host {first.name}", key=key)
    hosts = subnet.hosts()
    last = int(subnet.broadcast_address) - 1
    given = [(head, str(next(hosts))) for head in heads]
    given += [(b.name, str(ipaddress.IPv4Address(last - i))) for i, b in enumerate(balancers)]
    return Front(str(subnet), tuple(given))


def _fronted(inventory: Inventory, view: Cluster, front: Front, balancers: tuple[Balancer, ...], file: str) -> Cluster:
    """A tunnelled cluster as the balancers see it through the front: its API at the head's front address,
    admitting the balancers' front addresses."""
    if view.tunnel is None:
        return view
    api_host = inventory.hosts[view.head].vars.get("api_host")
    if api_host not in (None, ANY_IPV4, "::"):
        raise InventoryError(
            f"{shorten(str(api_host))!r} is the only address llama-server would listen on, but the balancers reach "
            f"the head through the tunnel at {front.address(view.head)}: leave api_host at {ANY_IPV4}",
            file=file,
            where=f"host {view.head}",
            key="api_host",
        )
    allow = tuple(front.address(balancer.name) for balancer in balancers)
    return replace(view, api_address=front.address(view.head), api_underlay=view.api_address, api_allow=allow)


def tunnel_subnet(
    value: Any, hosts: int, underlay: set[str], who: str = "the head and each worker"
) -> ipaddress.IPv4Network | str:
    """The tunnel's subnet, or why it cannot be one: a private IPv4 network (written without host bits) with room
    for `hosts` addresses, holding none of the hosts' own addresses (their routes would go into the tunnel)."""
    try:
        subnet = ipaddress.IPv4Network(str(value))
    except ValueError:
        return f"{shorten(str(value))!r} is not an IPv4 network written as address/prefix with no host bits set"
    if not subnet.is_private or subnet.is_loopback or subnet.is_link_local or subnet.is_multicast:
        return f"{subnet} is not a private IPv4 network (RFC 1918, 100.64.0.0/10 or similar)"
    if subnet.prefixlen > 30 or subnet.num_addresses - 2 < hosts:
        return f"{subnet} has no room for {hosts} host addresses ({who} get one)"
    inside = sorted(a for a in underlay if ipaddress.IPv4Address(a) in subnet)
    if inside:
        return f"{subnet} holds {inside[0]}, an address a host is reached at outside the tunnel: pick another subnet"
    return subnet


def _balancer(host: Host, file: str) -> Balancer:
    address = _ipv4(host.connection.address)
    if address is None or address.is_unspecified:
        raise InventoryError(
            f"{shorten(host.connection.address)!r} is not a numeric IPv4 address: the heads admit a balancer by "
            "the address it connects from",
            file=file,
            where=f"host {host.name}",
            key="ansible_host",
        )
    allow = _networks(host.vars.get("api_allow"), file, host.name)
    return Balancer(host.name, str(address), allow, host.vars.get("cluster_tunnel_port", 0))


def _ipv4(value: Any) -> ipaddress.IPv4Address | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def _worker(host: Host, file: str, warnings: list[str]) -> Worker:
    def error(message: str) -> InventoryError:
        return InventoryError(message, file=file, where=f"host {host.name}", key="rpc_host")

    port = host.vars["rpc_port"]
    explicit = host.vars.get("rpc_host")
    if explicit is None:
        bind = _ipv4(host.connection.address)
        if bind is None or bind.is_unspecified:
            raise error(
                f"not set, and ansible_host {shorten(host.connection.address)!r} is not a usable numeric IPv4 address: "
                "set rpc_host to the worker's IPv4 address on the cluster network (rpc-server takes no names, no IPv6)"
            )
        return Worker(host.name, str(bind), str(bind), port)
    bind = _ipv4(explicit)
    if bind is None:
        raise error(
            f"{shorten(str(explicit))!r} is not a numeric IPv4 address (rpc-server binds to one: no names, no IPv6)"
        )
    if not bind.is_unspecified:
        return Worker(host.name, str(bind), str(bind), port)
    address = _ipv4(host.connection.address)
    if address is None or address.is_unspecified:
        raise error(
            f"is {ANY_IPV4}, so the head would connect to ansible_host, but {shorten(host.connection.address)!r} is "
            "not a numeric IPv4 address: set rpc_host to the worker's cluster address instead"
        )
    warnings.append(
        f"{file}: host {host.name}: rpc_host: {ANY_IPV4} binds every interface of {host.name}: its RPC port "
        "(no authentication) is kept from other hosts only by IPAddressAllow= and the firewall; "
        "prefer the worker's cluster address"
    )
    return Worker(host.name, ANY_IPV4, str(address), port)


def _check_unique(workers: tuple[Worker, ...], file: str) -> None:
    seen: dict[str, str] = {}
    for worker in workers:
        if worker.endpoint in seen:
            raise InventoryError(
                f"same RPC endpoint {worker.endpoint} as host {seen[worker.endpoint]}",
                file=file,
                where=f"host {worker.name}",
                key="rpc_host",
            )
        seen[worker.endpoint] = worker.name


def _head_address(head: Host, file: str) -> str:
    explicit = head.vars.get("rpc_host")
    # 0.0.0.0 (say from `-e rpc_host=0.0.0.0`, meant for the workers) names no source address: use ansible_host.
    if explicit is None or explicit == ANY_IPV4:
        value, origin = head.connection.address, f"{'' if explicit is None else 'is 0.0.0.0, and '}ansible_host"
    else:
        value, origin = explicit, ""
    address = _ipv4(value)
    if address is not None and not address.is_unspecified:
        return str(address)
    shown = f"{origin} {shorten(str(value))!r}".strip()
    raise InventoryError(
        f"{'not set, and ' if explicit is None else ''}{shown} is not a usable numeric IPv4 address: on the head, "
        "rpc_host is the address its connections to the workers come from (the only one they admit)",
        file=file,
        where=f"host {head.name}",
        key="rpc_host",
    )


def _networks(value: Any, file: str, head: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [] if value in (None, "") else [value]
    networks = []
    for item in items:
        try:
            network = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise InventoryError(
                f"{shorten(str(item))!r} is not an address or CIDR network",
                file=file,
                where=f"host {head}",
                key="api_allow",
            ) from None
        # One address is written as one (10.0.0.5, not 10.0.0.5/32), like the cluster's own addresses.
        single = network.prefixlen == network.max_prefixlen
        networks.append(str(network.network_address) if single else str(network))
    return tuple(dict.fromkeys(networks))
