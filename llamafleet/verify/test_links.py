"""With cluster_tunnel: wireguard, the RPC links run inside WireGuard: every peer has a recent handshake, and a
worker's RPC port is closed on its own address, the head's too (the head reaches it at its tunnel address)."""

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


def test_rpc_closed_on_the_underlay(node, suite, expect):
    """The worker's RPC port is closed on its own address, even to the head: it is reached inside the tunnel."""
    view = _tunnel(node, expect)
    if node.name == view.head:
        pytest.skip("a head has no RPC port")
    worker = view.worker(node.name)
    endpoint = expect.underlay_endpoint(worker)
    if view.head not in suite.gathered.hosts:
        pytest.skip(f"{view.head} is not in --limit: it probes {endpoint}")
    seen = suite.gathered.hosts[view.head]
    require(seen.error is None, view.head, "reachable over SSH (to probe from it)", "an SSH session", seen.error)
    state = seen.facts["reach"].get(endpoint)
    require(
        state == "closed",
        node.name,
        "RPC port closed on the worker's own address",
        f"{view.head} cannot connect to {endpoint} (only to {worker.endpoint}, inside the tunnel)",
        f"{view.head} could: {state}" if state else "not probed",
        "`invoke provision`: rpc-server binds the tunnel address; the firewall admits RPC on the tunnel only",
    )
