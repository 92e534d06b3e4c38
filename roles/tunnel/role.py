"""Role tunnel: the WireGuard interface of every host of a cluster with `cluster_tunnel: wireguard` (and of the
balancers in front of such clusters), down and gone on the others.

Runs after tunnel/keys in the same phase: prepare() reads every host's public key (the run's first batch read it
already where nothing changed since), then each host gets its wg-quick configuration (wireguard.py) and
`wg-quick@lfwg0` enabled and running. wg-quick uses the kernel's WireGuard, else wireguard-go, so the same unit
serves both; it starts at boot after the network. A changed configuration restarts the interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llamafleet.cluster import TUNNEL_INTERFACE, Links
from llamafleet.errors import OperationError
from llamafleet.facts import PathInfo, SystemdUnit
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell, files, systemd
from llamafleet.roles import Role
from llamafleet.shell import quote

from . import wireguard

NAME = "tunnel"
RESTART = "restart wireguard"
SERVICE = f"wg-quick@{TUNNEL_INTERFACE}.service"
CONFIG = f"{wireguard.DIR}/{TUNNEL_INTERFACE}.conf"


@dataclass
class PublicKeys:
    """prepare's hand-off: host name -> its tunnel public key (None where it has none yet)."""

    by_host: dict[str, str | None] = field(default_factory=dict)


def prepare(run, hosts) -> None:
    """The public key of every host of this phase with a WireGuard interface (one round trip per host at most)."""
    found = run.handoff(PublicKeys).by_host

    def read(host) -> None:
        links = run.fleet.links(host.name)
        if links is not None:
            fact = wireguard.PublicKey(wireguard.key_path(links))
            found[host.name] = run.gather(host, [fact])[fact]

    run.each_host(hosts, read)


def config(ctx, links: Links) -> Operation:
    """The host's wg-quick configuration, once every peer's public key is known."""
    keys = ctx.run.handoff(PublicKeys).by_host
    missing = [peer.name for peer in links.peers if not keys.get(peer.name)]
    if not missing:
        text = wireguard.render_config(links, ctx.name, keys)
        return files.file(wireguard.config_path(links), text, mode="0600", notify=(RESTART,))
    why = f"public key of {', '.join(missing)} unknown: no key made there yet"
    if not ctx.run.check:
        why += " (that host failed earlier, or is outside --limit)"

    def plan(facts: Facts):
        if ctx.run.check:
            return Change((), f"{why}; it would be made by this run")
        raise OperationError(why)

    return Operation(f"file {wireguard.config_path(links)}", [], plan)


def operations(ctx):
    links = ctx.run.fleet.links(ctx.name)
    if links is None:
        yield down(TUNNEL_INTERFACE)
        yield files.absent(CONFIG)
        return
    yield config(ctx, links)
    yield systemd.service(wireguard.service(links), running=True, enabled=True, restarts=(RESTART,))


def down(interface: str) -> Operation:
    """wg-quick@INTERFACE stopped and disabled, where WireGuard's tools are installed at all."""
    name = f"wg-quick@{interface}.service"
    unit, info = SystemdUnit(name), PathInfo(f"{wireguard.DIR}/{interface}.conf", False)

    def plan(facts: Facts):
        state = facts[unit]
        active = state.get("ActiveState") not in (None, "", "inactive", "failed")
        enabled = state.get("UnitFileState") in ("enabled", "enabled-runtime")
        if not (active or enabled):
            return NoChange(f"{name} not running, not enabled")
        steps = [quote("systemctl disable --now %s", name)]
        if facts[info] is None and active:  # wg-quick down reads the file: without it, remove the interface
            steps.append(quote("ip link delete %s 2>/dev/null || true", interface))
        return Change(tuple(Shell(s) for s in steps), f"{state.get('ActiveState')}, {state.get('UnitFileState')}")

    return Operation(f"service {name} stopped and disabled", [unit, info], plan)


def _restart(ctx) -> Operation:
    return systemd.restarted(SERVICE)


ROLE = Role(NAME, operations, handlers={RESTART: _restart}, prepare=prepare)
