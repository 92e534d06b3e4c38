"""Workers: reachable from the head only, in use by it, on its RPC protocol, their tensor cache bounded and seeded."""

from __future__ import annotations

import pytest

from llamafleet import paths
from llamafleet.verify.expected import FIREWALL_LOOK as FIREWALL
from llamafleet.verify.expected import Journal, seeded_sizes
from llamafleet.verify.plugin import reach_from, require
from llamafleet.verify.probes import PROBE_SECONDS

testinfra_hosts = ["workers"]


def test_rpc_in_use_by_head(node, observed, expect):
    """The head holds a connection to the worker's RPC server."""
    worker, head = expect.worker(node), expect.view(node).head_address
    peers = sorted({s.peer for s in observed.facts["established"] if s.port == worker.port})
    require(
        head in peers,
        node.name,
        "the head holds a connection to the RPC server",
        f"an established connection {head} -> {worker.endpoint}",
        ", ".join(peers) or "no connection",
        f"journalctl -u llama-server on {expect.view(node).head}; {Journal(node.name, paths.RPC_UNIT)}",
    )


def test_rpc_cache_within_limit(node, observed, expect):
    """The worker's RPC tensor cache exists and stays within its size limit."""
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
    """The worker's RPC cache holds every entry seeding gives the deployed model."""
    if not expect.workers[node.name].rpc_cache_seed:
        pytest.skip(f"{node.name}: rpc_cache_seed is off")
    cache = observed.facts["cache"]
    head = suite.gathered.hosts.get(expect.view(node).head)
    record = (head.facts.get("model") if head is not None and head.error is None else None) or {}
    wanted = seeded_sizes(record.get("sha256"))  # None: this controller did not deploy it
    if wanted is None:
        found, want = f"{cache.entries} entries", "at least one entry"
        ok = cache.entries > 0
    else:
        # rpc-server trusts an entry's size: a cut one would load silently as wrong weights.
        wrong = _wrong_entries(wanted, observed.facts["cache_entries"])
        want = f"the {len(wanted)} entries of {record.get('name')}, each a file of exactly its tensor's size"
        found = f"{len(wrong)} of {len(wanted)} not so: {', '.join(wrong[:5])}" if wrong else "all of them"
        ok = not wrong
    look = f"ls -l {paths.RPC_CACHE_DIR}; `invoke deploy` with rpc_cache_seed writes them again"
    require(ok, node.name, "RPC tensor cache seeded", want, found, look)


def _wrong_entries(wanted: dict[str, int], present: dict[str, tuple[str, int]]) -> list[str]:
    """Each wanted entry that is not a regular file of its size, with what is there instead."""
    kinds = {"l": "a symlink", "d": "a directory"}
    wrong = []
    for name, size in wanted.items():
        kind, got = present.get(name, ("", 0))
        if kind != "f" or got != size:
            there = f"{got} bytes" if kind == "f" else kinds.get(kind, f"of type {kind}") if kind else "missing"
            wrong.append(f"{name} {there} ({size} expected)")
    return wrong


def test_rpc_protocol_as_head(node, observed, expect, suite):
    """The worker's rpc-server speaks the RPC protocol version of the head's build."""
    head = expect.view(node).head
    if head not in suite.gathered.hosts:
        pytest.skip(f"{head} is not in --limit: its RPC protocol version is not read")
    seen = suite.gathered.hosts[head]
    require(seen.error is None, head, "reachable over SSH (to read its RPC protocol)", "an SSH session", seen.error)
    # llama.cpp's handshake checks the major and minor version only; the patch (its op count) must match too.
    theirs, announced = seen.facts["rpc_of_build"], observed.facts["rpc_announced"]
    want = f"v{theirs}, what the build on {head} speaks" if theirs else f"the version of {head}'s build (none printed)"
    found = f"v{announced} announced by the running rpc-server" if announced else "no `Starting RPC server` line"
    if observed.facts["service"].running_for is None:
        found = "no rpc-server running"
    look = f"journalctl -u {paths.RPC_UNIT} | grep 'Starting RPC server' on {node.name}"
    look += "; `invoke provision` installs one build everywhere and restarts the workers"
    require(announced == theirs and theirs is not None, node.name, "RPC protocol as the head's", want, found, look)


def test_rpc_reachable_from_head(node, suite, expect):
    """The head can reach the worker's RPC port."""
    endpoint = expect.worker(node).endpoint
    head = expect.view(node).head
    state = reach_from(suite, head, endpoint)
    require(
        state in ("session", "open"),
        node.name,
        "RPC port reachable from the head",
        f"{head} holds a session to {endpoint} or can open one",
        f"no session, and no TCP connection within {PROBE_SECONDS} s" if state else "not probed",
        f"{Journal(node.name, paths.RPC_UNIT)}; {FIREWALL}",
    )


def test_rpc_closed_to_others(node, suite, expect):
    """The worker's RPC port is closed to everyone but the head."""
    endpoint = expect.worker(node).endpoint
    prober = expect.outsider_of(node.name)
    if prober is None:
        state = suite.gathered.controller_reach.get(endpoint)
        prober = "the controller"
    else:
        state = reach_from(suite, prober, endpoint)
    require(
        state == "closed",
        node.name,
        "RPC port closed to everyone but the head",
        f"{prober} cannot connect to {endpoint}",
        f"{prober} connected ({state})" if state else "not probed",
        FIREWALL,
    )


def test_rpc_closed_on_the_underlay(node, suite, expect):
    """The worker's RPC port is closed on its own address, even to the head: it is reached inside the tunnel."""
    view = expect.view(node)
    if view.tunnel is None:
        pytest.skip(f"{node.name}: cluster_tunnel is none")
    worker = view.worker(node.name)
    endpoint = expect.underlay_endpoint(worker)
    state = reach_from(suite, view.head, endpoint)
    require(
        state == "closed",
        node.name,
        "RPC port closed on the worker's own address",
        f"{view.head} cannot connect to {endpoint} (only to {worker.endpoint}, inside the tunnel)",
        f"{view.head} could: {state}" if state else "not probed",
        "`invoke provision`: rpc-server binds the tunnel address; the firewall admits RPC on the tunnel only",
    )
