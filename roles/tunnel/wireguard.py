"""A tunnelled cluster's WireGuard: the wg-quick configuration each host gets (rendered purely, no key in it), and
the facts read about it on a host.

The configuration names no private key: `PostUp` loads the host's own, made on the host (KEY, root 0600), so the
file can be shown (render, --diff) and compared like any other. The head peers with each of its workers (and each
balancer), each worker with the head, a balancer with each tunnelled head (cluster.Fleet.links); a peer's
`Endpoint` is its address outside the tunnel, and keepalives every
KEEPALIVE_SECONDS keep the handshakes recent and both ends' firewalls' UDP state open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from llamafleet.cluster import Links, Tunnel
from llamafleet.facts import Fact
from llamafleet.shell import quote

DIR = "/etc/wireguard"
KEEPALIVE_SECONDS = 25
PACKAGES = ("wireguard-tools",)  # wg and wg-quick (with wg-quick@.service)
USERSPACE_PACKAGES = ("wireguard-go",)  # where the kernel has no WireGuard: wg-quick falls back to it
PUBLIC_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def config_path(links: Tunnel | Links) -> str:
    return f"{DIR}/{links.interface}.conf"


def key_path(links: Tunnel | Links) -> str:
    return f"{DIR}/{links.interface}.key"


def service(links: Tunnel | Links) -> str:
    return f"wg-quick@{links.interface}.service"


def unit_order(tunnel: Tunnel | None) -> dict[str, str | None]:
    """What a service unit whose traffic crosses the tunnel names to start after it (and stop before it): the
    template variables tunnel_service and tunnel_interface, None without a tunnel."""
    return {
        "tunnel_service": service(tunnel) if tunnel else None,
        "tunnel_interface": tunnel.interface if tunnel else None,
    }


def render_config(links: Links, host: str, public_keys: Mapping[str, str] | None) -> str:
    """The wg-quick configuration of `host`; `public_keys` None shows where each peer's key goes (invoke render)."""
    where = f"of cluster {links.cluster}" if links.cluster is not None else "in front of the tunnelled heads"
    lines = [
        f"# Managed by llamafleet (role tunnel): {links.kind} {host} {where}. Changes here are overwritten.",
        f"# The private key is {key_path(links)}, made on this host; it never leaves it.",
        "[Interface]",
        f"Address = {', '.join(links.addresses)}",
        f"ListenPort = {links.port}",
        "# Only the subnet's own route (from Address): nothing else is routed into the tunnel.",
        "Table = off",
        f"PostUp = wg set %i private-key {key_path(links)}",
    ]
    for peer in links.peers:
        key = (
            f"({peer.name}'s public key, read from it on provision)" if public_keys is None else public_keys[peer.name]
        )
        lines += [
            "",
            "[Peer]",
            f"# {peer.kind} {peer.name}",
            f"PublicKey = {key}",
            f"AllowedIPs = {peer.address}/32",
            f"Endpoint = {peer.endpoint}:{peer.port}",
            f"PersistentKeepalive = {KEEPALIVE_SECONDS}",
        ]
    return "\n".join(lines) + "\n"


class PublicKey(Fact):
    """The public key of the host's tunnel key (None without a key or without `wg`); the private key stays there."""

    def command(self) -> str:
        return quote("[ -s %s ] && wg pubkey < %s", self.args[0], self.args[0])

    def process(self, lines: list[str]) -> str | None:
        return lines[0] if len(lines) == 1 and PUBLIC_KEY.fullmatch(lines[0]) else None


class KernelWireguard(Fact):
    """Whether the running kernel has WireGuard (loaded, or a module modprobe would load)."""

    static = True

    def command(self) -> str:
        return (
            "if [ -d /sys/module/wireguard ] || modprobe -n -q wireguard 2>/dev/null; then echo yes; else echo no; fi"
        )

    def process(self, lines: list[str]) -> bool:
        return lines == ["yes"]


def handshakes(interface: str) -> str:
    """Shell command printing each peer's latest handshake (`wg show`, as root: KEY EPOCH, 0 for never), `down`
    when the interface is not there, then `now EPOCH`."""
    return quote('{ wg show %s latest-handshakes || echo down; echo "now $(date +%%s)"; } 2>/dev/null', interface)


def handshake_ages(lines: list[str]) -> dict[str, int | None] | None:
    """handshakes()'s output -> public key -> seconds since its latest handshake (None: never); None when the
    interface is down or the output has no time."""
    now = next((int(line[4:]) for line in lines if line.startswith("now ") and line[4:].isdigit()), None)
    if "down" in lines or now is None:
        return None
    peers = (line.split() for line in lines if not line.startswith("now "))
    stamps = {parts[0]: int(parts[1]) for parts in peers if len(parts) == 2 and parts[1].isdigit()}
    return {key: now - stamp if stamp else None for key, stamp in stamps.items()}
