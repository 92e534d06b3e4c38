"""The balancers serve every cluster through one endpoint: HAProxy running, the key passed through to the heads,
each head in rotation and healthy, the heads' APIs reachable from the balancer, its port closed to outsiders."""

from __future__ import annotations

import pytest

from llamafleet import haproxy
from llamafleet.verify.expected import Journal
from llamafleet.verify.gather import BALANCER_UNIT
from llamafleet.verify.plugin import reach_from, require
from llamafleet.verify.probes import MIN_UPTIME, PROBE_SECONDS

testinfra_hosts = ["balancers"]
SHOW = "echo 'show stat' | socat - UNIX-CONNECT:" + haproxy.ADMIN_SOCKET


def _status(observed, name: str) -> int | None:
    answer = observed.facts["api"].get(name)
    return getattr(answer, "status", None)


def test_haproxy_running(node, observed):
    """HAProxy is enabled and running on the balancer."""
    state = observed.facts["service"]
    wanted = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "UnitFileState": "enabled"}
    up = state.running_for
    ok = all(state.get(k) == v for k, v in wanted.items()) and up is not None and up >= MIN_UPTIME
    require(
        ok,
        node.name,
        f"{BALANCER_UNIT} enabled and running",
        "loaded, active, running, enabled",
        ", ".join(state.get(k) or "?" for k in wanted),
        Journal(node.name, BALANCER_UNIT),
    )


def test_endpoint_answers_with_the_key(node, observed, expect):
    """The endpoint answers a completion and /v1/models with the API key, through a head."""
    address, port = expect.endpoint_probe(node)
    found = (_status(observed, "health"), _status(observed, "models"), _status(observed, "completion"))
    require(
        found == (200, 200, 200),
        node.name,
        "the endpoint serves the API",
        f"{address}:{port} /health, /v1/models with the key and /completion: 200 each",
        f"{found[0]}, {found[1]}, {found[2]}",
        f"{SHOW} on {node.name}; {Journal(node.name, BALANCER_UNIT)}",
    )


def test_endpoint_refuses_without_the_key(node, observed, expect):
    """The endpoint refuses a request without the API key (the heads check it)."""
    status = _status(observed, "models_without_key")
    require(
        status == 401,
        node.name,
        "the endpoint needs the API key",
        "/v1/models without the key: 401 from the head",
        f"{status}",
        f"api_key_file of the heads; {Journal(node.name, BALANCER_UNIT)}",
    )


def test_every_head_in_rotation(node, observed, expect):
    """Every cluster's head is in the balancer's rotation and passes its /health check."""
    servers = observed.facts["rotation"]
    wanted = [view.name for view in expect.fleet.clusters]
    if servers is None:
        found = "haproxy's runtime API did not answer"
    else:
        found = "; ".join(
            f"{name}: {servers[name].admin}, {servers[name].status}" if name in servers else f"{name}: not a server"
            for name in wanted
        )
    ok = servers is not None and all(name in servers and servers[name].in_rotation for name in wanted)
    require(
        ok,
        node.name,
        "every head in rotation and healthy",
        f"{', '.join(wanted)}: ready and UP",
        found,
        f"{SHOW} on {node.name}; a drained head comes back with `invoke deploy` or `invoke provision`",
    )


def test_heads_reachable_from_the_balancer(node, observed, expect):
    """The balancer can open a connection to every head's API."""
    reach = observed.facts["reach"]
    endpoints = {view.head: expect.head_api(view) for view in expect.fleet.clusters}
    closed = [
        f"{head} ({endpoint})" for head, endpoint in endpoints.items() if reach.get(endpoint) not in ("open", "session")
    ]
    require(
        not closed,
        node.name,
        "every head's API reachable from the balancer",
        f"a TCP connection to {', '.join(endpoints.values())}",
        f"no connection within {PROBE_SECONDS} s to " + ", ".join(closed) if closed else "all open",
        "the heads' firewall and IPAddressAllow= admit the balancers: `invoke provision`",
    )


def test_tunnelled_heads_reached_through_the_tunnel_only(node, observed, expect):
    """A head whose cluster has a tunnel takes the balancer's requests through it only: its API at its own address
    is closed to the balancer."""
    outside = {view.head: expect.head_api_outside(view) for view in expect.fleet.clusters if view.api_underlay}
    if not outside:
        pytest.skip("no cluster has a tunnel: the balancer reaches every head at its own address")
    reach = observed.facts["reach"]
    open_ = [f"{head} ({endpoint}): {reach.get(endpoint)}" for head, endpoint in outside.items()
             if reach.get(endpoint) != "closed"]  # fmt: skip
    require(
        not open_,
        node.name,
        "tunnelled heads' APIs closed to the balancer outside the tunnel",
        f"no TCP connection to {', '.join(outside.values())}",
        ", ".join(open_),
        "the head's firewall and IPAddressAllow= admit the balancers' tunnel addresses only: `invoke provision`",
    )


def test_port_closed_outside_api_allow(node, suite, expect):
    """The balancer's port is closed to a host outside its api_allow."""
    prober = expect.outside_of_balancer(node)
    if prober is None:
        pytest.skip(f"every head and worker is inside {node.name}'s api_allow")
    endpoint = f"{expect.fleet.balancer(node.name).address}:{expect.balancers[node.name].balancer_port}"
    state = reach_from(suite, prober, endpoint)
    require(
        state == "closed",
        node.name,
        "the endpoint closed outside api_allow",
        f"{prober} cannot connect to {endpoint}",
        f"{prober} could: {state}" if state else "not probed",
        "api_allow of the balancer; `invoke provision` rewrites the firewall",
    )
