"""With cluster_tunnel: wireguard, the RPC links (and the balancers' links to the heads) run inside WireGuard: every
peer has a recent handshake (a worker's RPC port closed at its own address is checked with the workers, a head's API
closed to the balancers outside the tunnel with the balancers)."""

from __future__ import annotations

import pytest

from llamafleet.verify.plugin import require

testinfra_hosts = ["head", "workers", "balancers"]
# WireGuard makes a new handshake every 2 minutes while packets flow (the peers' keepalives make them flow).
HANDSHAKE_SECONDS = 180


def test_tunnel_handshakes_recent(node, observed, expect):
    """Every WireGuard peer of the host had a handshake in the last 3 minutes."""
    links = expect.fleet.links(node.name)
    if links is None:
        pytest.skip(f"{node.name}: no WireGuard interface (cluster_tunnel is none)")
    peers = len(links.peers)
    ages = observed.facts.get("handshakes") or {}
    stale = [f"{key[:8]}... {'never' if age is None else f'{age} s ago'}" for key, age in ages.items()
             if age is None or age > HANDSHAKE_SECONDS]  # fmt: skip
    interface = links.interface
    require(
        len(ages) == peers and not stale,
        node.name,
        "WireGuard peers with a recent handshake",
        f"{peers} peer(s) on {interface}, each with a handshake within {HANDSHAKE_SECONDS} s",
        f"{len(ages)} peer(s)" + (f"; {', '.join(stale)}" if stale else ""),
        f"wg show {interface}; journalctl -u wg-quick@{interface}; the firewall admits UDP {links.port}",
    )
