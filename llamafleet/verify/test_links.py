"""With cluster_tunnel: wireguard, the RPC links run inside WireGuard: every peer has a recent handshake (a worker's
RPC port closed at its own address is checked with the workers)."""

from __future__ import annotations

import pytest

from llamafleet.verify.plugin import require

testinfra_hosts = ["head", "workers"]
# WireGuard makes a new handshake every 2 minutes while packets flow (the peers' keepalives make them flow).
HANDSHAKE_SECONDS = 180


def _tunnel(node, expect):
    view = expect.view(node)
    if view.tunnel is None:
        pytest.skip(f"{node.name}: cluster_tunnel is none")
    return view


def test_tunnel_handshakes_recent(node, observed, expect):
    """Every WireGuard peer of the host had a handshake in the last 3 minutes."""
    view = _tunnel(node, expect)
    peers = len(view.workers) if node.name == view.head else 1
    ages = observed.facts.get("handshakes") or {}
    stale = [f"{key[:8]}... {'never' if age is None else f'{age} s ago'}" for key, age in ages.items()
             if age is None or age > HANDSHAKE_SECONDS]  # fmt: skip
    interface = view.tunnel.interface
    require(
        len(ages) == peers and not stale,
        node.name,
        "WireGuard peers with a recent handshake",
        f"{peers} peer(s) on {interface}, each with a handshake within {HANDSHAKE_SECONDS} s",
        f"{len(ages)} peer(s)" + (f"; {', '.join(stale)}" if stale else ""),
        f"wg show {interface}; journalctl -u wg-quick@{interface}; the firewall admits UDP {view.tunnel.port}",
    )
