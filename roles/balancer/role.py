"""Role balancer: HAProxy (the distribution's package) on the hosts of group balancers, one endpoint spreading
requests over the heads of every cluster, in a hardened drop-in; reloaded, not restarted, when the heads change."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from llamafleet import haproxy, units
from llamafleet.errors import InventoryError
from llamafleet.operations import files as file_ops
from llamafleet.operations import packages, systemd
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell, Step, Upload
from llamafleet.roles import Role, templates_beside
from llamafleet.shell import quote

from . import settings
from .settings import BalancerSettings

NAME = "balancer"
TEMPLATE_DIR = templates_beside(__file__)
PACKAGES = ("haproxy", "socat")  # socat carries the runtime-API commands to haproxy's unix socket
UNIT = haproxy.UNIT
DROPIN_DIR = f"{systemd.UNIT_DIR}/{UNIT}.d"
DROPIN = f"{UNIT}.d/llamafleet.conf"  # relative to the unit folder
CONFIG = "/etc/haproxy/haproxy.cfg"
# The new configuration is written beside the old one and checked by haproxy before it replaces it.
STAGED = f"{CONFIG}.lf-new"
RUNTIME_DIR = "/run/haproxy"
# The master process chroots, drops to user haproxy and signals its workers (they no longer run as root).
CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT", "CAP_KILL")
PRIVILEGED_PORTS = 1024

# api_tls: the CA(s) HAProxy verifies the heads' certificates with; names it may take in a server line.
TLS_CA_FILE = "/etc/haproxy/llamafleet-ca.pem"
TLS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]*")
CONFIGURED_SECONDS = 30  # after a reload or restart, for the runtime API to answer for the new configuration
RESTART = "restart haproxy"
RELOAD = "reload haproxy"


class Served(Protocol):
    """What the balancer needs of a cluster: its name and where its head's API answers."""

    @property
    def name(self) -> str: ...
    @property
    def api_address(self) -> str: ...
    @property
    def api_port(self) -> int: ...


@dataclass(frozen=True)
class Server:
    """One server line of the backend: a cluster's head."""

    name: str
    address: str
    port: int


def servers(clusters: Iterable[Served]) -> list[Server]:
    """The backend's servers in cluster order; ValueError unless each has a plain name, a numeric IPv4 address and a
    port (nothing else may reach a configuration line)."""
    found = []
    for cluster in clusters:
        name = haproxy.server_name(cluster.name)
        try:
            address = ipaddress.IPv4Address(cluster.api_address)
        except ValueError:
            raise ValueError(f"cluster {name}: {cluster.api_address!r} is not a numeric IPv4 address") from None
        if address.is_unspecified:
            raise ValueError(f"cluster {name}: the head's API address is {address}, which no balancer can reach")
        port = cluster.api_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"cluster {name}: {port!r} is not a TCP port")
        found.append(Server(name, str(address), port))
    names = [server.name for server in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two clusters have the same name: {', '.join(names)}")
    return found


def render_config(
    balancer: BalancerSettings, clusters: Iterable[Served], tls_names: Mapping[str, str] | None = None
) -> str:
    """The text of /etc/haproxy/haproxy.cfg: one frontend on balancer_host:balancer_port, one backend of every
    cluster's head. `tls_names`: cluster -> the name its head's certificate must carry, for heads with api_tls
    (HAProxy speaks TLS to them and checks them over TLS, verifying with TLS_CA_FILE only)."""
    named = dict(tls_names or {})
    for name in named.values():
        if not TLS_NAME.fullmatch(name):
            raise ValueError(f"{name!r} cannot be a certificate name in haproxy.cfg")
    context = {
        "admin_socket": haproxy.ADMIN_SOCKET,
        "frontend": haproxy.FRONTEND,
        "backend": haproxy.BACKEND,
        "bind": balancer.balancer_host,
        "port": balancer.balancer_port,
        "interval": balancer.balancer_check_interval,
        "timeout": balancer.balancer_timeout,
        "servers": servers(clusters),
        "tls": {haproxy.server_name(cluster): verify for cluster, verify in named.items()},
        "ca_file": TLS_CA_FILE,
    }
    return units.render(TEMPLATE_DIR, "haproxy.cfg.j2", context)


def tls_of(run_inventory, clusters: Iterable[Served]) -> tuple[dict[str, str], bytes]:
    """For the clusters whose head has api_tls: cluster -> the name its certificate carries, and the CA bundle
    HAProxy verifies them with (each head's CA once; b"" when no head has api_tls)."""
    from llamafleet.roles.head import api_tls
    from llamafleet.roles.head import settings as head_settings
    from llamafleet.tls import load_ca

    named: dict[str, str] = {}
    bundle: dict[bytes, None] = {}
    file = str(run_inventory.path)
    heads = {cluster.name: getattr(cluster, "head", None) for cluster in clusters}
    for name, head_name in heads.items():
        if head_name is None:
            continue
        head = head_settings.settings(run_inventory.hosts[head_name], file)
        ca_file = api_tls.client_ca(head, file)
        if ca_file is None:
            continue
        named[name] = api_tls.verify_name(head, file)
        bundle[load_ca(ca_file).pem if ca_file.exists() else b""] = None
    return named, b"".join(bundle)


def render_dropin(balancer: BalancerSettings, clusters: Iterable[Served], clients: Sequence[str] = ()) -> str:
    """The text of haproxy.service's drop-in: the sandbox, and when `clients` (addresses or networks) are given,
    the only addresses it exchanges packets with: them, the heads and loopback."""
    heads = [server.address for server in servers(clusters)]
    bind_service = balancer.balancer_port < PRIVILEGED_PORTS
    context = {
        "runtime_dir": RUNTIME_DIR,
        "allow": [*dict.fromkeys([*clients, *heads]), "localhost"] if clients else [],
        "capabilities": [*CAPABILITIES, *(["CAP_NET_BIND_SERVICE"] if bind_service else [])],
        "bind_service": bind_service,
        "port": balancer.balancer_port,
    }
    return units.render(TEMPLATE_DIR, "haproxy.service.conf.j2", context)


def _clients(fleet, host_name: str) -> tuple[str, ...]:
    """Who may reach this balancer's port (the balancer's api_allow, as the fleet resolved it)."""
    return fleet.balancer(host_name).allow


def files(host, fleet, file: str | None = None, tls_names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every file this role renders on a balancer: path on the host -> content."""
    balancer = settings.settings(host, file)
    return {
        CONFIG: render_config(balancer, fleet.clusters, tls_names),
        f"{systemd.UNIT_DIR}/{DROPIN}": render_dropin(balancer, fleet.clusters, _clients(fleet, host.name)),
    }


def validate(run, hosts) -> None:
    """Before any connection: each balancer's settings, and every cluster can be a server of the backend."""
    for host in hosts:
        settings.settings(host, run.inventory_file)
    try:
        servers(run.fleet.clusters)
    except ValueError as exc:
        raise InventoryError(str(exc), file=run.inventory_file, where="group balancers") from None


# -- operations ----------------------------------------------------------------------------------------------


def checked_config(text: str, *, notify: tuple[str, ...] = ()) -> Operation:
    """/etc/haproxy/haproxy.cfg holds `text` (0640 root:haproxy), installed only once `haproxy -c` accepted it: a
    configuration haproxy refuses fails the operation and leaves the running one as it was."""
    operation = file_ops.file(CONFIG, text, mode="0640", group="haproxy", notify=notify, description=f"config {CONFIG}")
    inner = operation.planner

    def plan(facts: Facts) -> Change | NoChange:
        result = inner(facts)
        if isinstance(result, Change):
            steps = tuple(step for each in result.steps for step in _staged(each))
            return dataclasses.replace(result, steps=steps)
        return result

    operation.planner = plan
    return operation


def _staged(step: Step) -> tuple[Step, ...]:
    """An upload of the configuration lands beside it, then replaces it once haproxy accepted it."""
    if not isinstance(step, Upload):
        return (step,)
    return (dataclasses.replace(step, path=STAGED), Shell(install_checked(STAGED, CONFIG)))


def install_checked(staged: str, config: str) -> str:
    """Shell command: `staged` replaces `config` when `haproxy -c` accepts it; otherwise it is removed and the
    command fails with haproxy's reasons on stderr."""
    return quote(
        "(haproxy -c -f %s >/dev/null || { rm -f -- %s; exit 1; }; mv -fT -- %s %s)", staged, staged, staged, config
    )


def reloaded(clusters: Iterable[Served], restart: bool = False) -> Operation:
    """haproxy re-reads its configuration, keeping its connections, or with `restart` starts again (a handler); then
    its runtime API answers for that configuration (until then the socket may be the old process's)."""
    names = [server.name for server in servers(clusters)]
    command = quote("systemctl restart %s" if restart else "systemctl reload-or-restart %s", UNIT)
    steps = (Shell(command), Shell(haproxy.wait_configured(names, CONFIGURED_SECONDS)))

    def plan(facts: Facts) -> Change:
        return Change(steps, "notified")

    return Operation(f"{'restart' if restart else 'reload'} {UNIT}", [], plan, idempotent=False)


def operations(ctx):
    balancer = settings.settings(ctx.host, ctx.run.inventory_file)
    fleet = ctx.run.fleet
    yield packages.present(list(PACKAGES), ctx.os["family"])
    yield file_ops.directory(DROPIN_DIR)
    # A changed sandbox or environment takes effect only when haproxy starts again: restart.
    dropin = render_dropin(balancer, fleet.clusters, _clients(fleet, ctx.name))
    yield systemd.unit_file(DROPIN, dropin, notify=(RESTART,))
    tls_names, bundle = tls_of(ctx.run.inventory, fleet.clusters)
    if tls_names:  # before the configuration that names it: haproxy -c reads it
        yield file_ops.file(TLS_CA_FILE, bundle, mode="0644", notify=(RELOAD,))
    yield checked_config(render_config(balancer, fleet.clusters, tls_names), notify=(RELOAD,))
    yield systemd.service(UNIT, running=True, enabled=True, restarts=(RESTART, RELOAD))


ROLE = Role(
    NAME,
    operations,
    template_dir=TEMPLATE_DIR,
    handlers={
        RESTART: lambda ctx: reloaded(ctx.run.fleet.clusters, restart=True),
        RELOAD: lambda ctx: reloaded(ctx.run.fleet.clusters),
    },
    validate=validate,
)
