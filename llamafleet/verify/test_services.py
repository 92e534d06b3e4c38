"""The services run as their units say: enabled, active, not restart-looping, sandboxed, listening where they should."""

from __future__ import annotations

from llamafleet.verify.expected import Journal, normalise
from llamafleet.verify.plugin import require
from llamafleet.verify.probes import MIN_UPTIME

testinfra_hosts = ["head", "workers"]
# What the kernel says of a sandboxed main process: no new privileges, a seccomp filter, no capabilities.
PROCESS = {"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000", "CapBnd": "0000000000000000"}


def test_service_running(node, observed, expect):
    """The service is enabled and running, not restarting in a loop."""
    unit = expect.unit(node)
    state = observed.facts["service"]
    up = state.running_for
    wanted = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "UnitFileState": "enabled"}
    ok = all(state.get(k) == v for k, v in wanted.items()) and up is not None and up >= MIN_UPTIME
    found = ", ".join(state.get(k) or "?" for k in wanted) + f", up {up or 0:.0f} s, {state.get('NRestarts')} restarts"
    require(
        ok,
        node.name,
        f"{unit} enabled and running",
        "loaded, active, running, enabled, up >= 1 s",
        found,
        Journal(node.name, unit),
    )


def test_service_hardening(node, observed, expect):
    """The service's sandbox is in effect as its unit says."""
    unit = expect.unit(node)
    state = observed.facts["service"]
    wanted = expect.hardening(node)
    drift = [f"{k}={state.get(k)!r}" for k, v in wanted.items() if normalise(k, state.get(k)) != v]
    if state.running_for is not None:  # a stopped service has no process to judge (test_service_running says so)
        drift += [f"process {k}={state.process.get(k)}" for k, v in PROCESS.items() if state.process.get(k) != v]
        if state.process.get("Uid", "0").split()[0] == "0":
            drift.append("process runs as root")
    if state.get("NeedDaemonReload") != "no":
        drift.append("unit file changed on disk since it was loaded (NeedDaemonReload)")
    require(
        not drift,
        node.name,
        f"{unit} sandbox in effect",
        f"{len(wanted)} unit properties as rendered, NoNewPrivs, seccomp, no capabilities, not root",
        "; ".join(drift),
        Journal(node.name, unit),
    )


def test_listening_address(node, observed, expect):
    """The service listens on its configured address only."""
    if expect.role_of(node) == "head":
        wanted, port = expect.head_settings(node).api_host, expect.head_settings(node).api_port
    else:
        worker = expect.worker(node)
        wanted, port = worker.bind, worker.port
    found = sorted({f"{s.address}:{s.port}" for s in observed.facts["listening"] if s.port == port})
    require(
        found == [f"{wanted}:{port}"],
        node.name,
        f"port {port} listening on the configured address only",
        f"{wanted}:{port}",
        ", ".join(found) or "nothing listening",
        f"ss -ltnp on {node.name}; {Journal(node.name, expect.unit(node))}",
    )
