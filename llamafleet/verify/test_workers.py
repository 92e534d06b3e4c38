"""Workers: reachable from the head only, in use by it, their tensor cache in bounds."""

from __future__ import annotations

import pytest

from llamafleet import paths
from llamafleet.verify.expected import FIREWALL_LOOK as FIREWALL
from llamafleet.verify.expected import Journal
from llamafleet.verify.plugin import require
from llamafleet.verify.probes import PROBE_SECONDS

testinfra_hosts = ["workers"]


def test_rpc_in_use_by_head(node, observed, expect):
    worker, head = expect.worker(node), expect.view.head_address
    peers = sorted({s.peer for s in observed.facts["established"] if s.port == worker.port})
    require(
        head in peers,
        node.name,
        "the head holds a connection to the RPC server",
        f"an established connection {head} -> {worker.endpoint}",
        ", ".join(peers) or "no connection",
        f"journalctl -u llama-server on {expect.view.head}; {Journal(node.name, paths.RPC_UNIT)}",
    )


def test_rpc_cache_within_limit(node, observed, expect):
    cache, limit = observed.facts["cache"], expect.cache_limit(node)
    found = f"{cache.size} bytes, {cache.entries} entries" if cache.present else "no directory"
    require(
        cache.present and (limit is None or cache.size <= limit),
        node.name,
        "RPC tensor cache present, in bounds",
        f"{paths.RPC_CACHE_DIR} of at most {limit if limit is not None else 'unbounded'} bytes",
        found,
        f"du -sh {paths.RPC_CACHE_DIR}; rpc_cache_max_size",
    )


def test_rpc_cache_seeded(node, observed, expect, suite):
    if not expect.workers[node.name].rpc_cache_seed:
        pytest.skip(f"{node.name}: rpc_cache_seed is off")
    cache = observed.facts["cache"]
    head = suite.gathered.hosts.get(expect.view.head)
    record = (head.facts.get("model") if head is not None and head.error is None else None) or {}
    wanted = expect.seeded_entries(record.get("sha256"))  # None: this controller did not deploy it
    if wanted is None:
        found, want = f"{cache.entries} entries", "at least one entry"
        ok = cache.entries > 0
    else:
        found, want = f"{cache.entries} entries", f"at least the {wanted} entries of {record.get('name')}"
        ok = cache.present and cache.entries >= wanted
    require(ok, node.name, "RPC tensor cache seeded", want, found, f"ls {paths.RPC_CACHE_DIR}; rpc_cache_seed")


def _reach(suite, prober: str, endpoint: str) -> str | None:
    if prober not in suite.gathered.hosts:
        pytest.skip(f"{prober} is not in --limit: it probes {endpoint}")
    seen = suite.gathered.hosts[prober]
    require(seen.error is None, prober, "reachable over SSH (to probe from it)", "an SSH session", seen.error)
    return seen.facts["reach"].get(endpoint)


def test_rpc_reachable_from_head(node, suite, expect):
    endpoint = expect.worker(node).endpoint
    head = expect.view.head
    state = _reach(suite, head, endpoint)
    require(
        state in ("session", "open"),
        node.name,
        "RPC port reachable from the head",
        f"{head} holds a session to {endpoint} or can open one",
        f"no session, and no TCP connection within {PROBE_SECONDS} s" if state else "not probed",
        f"{Journal(node.name, paths.RPC_UNIT)}; {FIREWALL}",
    )


def test_rpc_closed_to_others(node, suite, expect):
    endpoint = expect.worker(node).endpoint
    prober = expect.outsider_of(node.name)
    if prober is None:
        state = suite.gathered.controller_reach.get(endpoint)
        prober = "the controller"
    else:
        state = _reach(suite, prober, endpoint)
    require(
        state == "closed",
        node.name,
        "RPC port closed to everyone but the head",
        f"{prober} cannot connect to {endpoint}",
        f"{prober} connected ({state})" if state else "not probed",
        FIREWALL,
    )
