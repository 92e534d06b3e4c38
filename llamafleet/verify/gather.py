"""Read every fact verify needs from every host: one batched SSH command per host, all hosts at once."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from llamafleet import haproxy, paths, tls
from llamafleet.errors import LlamafleetError
from llamafleet.facts import Fact, OsRelease, PathInfo, batch_script, parse_batch
from llamafleet.inventory import Host
from llamafleet.operations.base import Facts
from llamafleet.roles.head import api_tls
from llamafleet.roles.llama_cpp import hostfacts as llama_facts
from llamafleet.ssh import HostConnection

from . import probes, tls_probes
from .expected import Expectations, firewall_role, service_user

BALANCER_UNIT = haproxy.UNIT
HEALTH_WAIT = 120  # seconds the head may still be loading its model (/health 503) before it counts as failed
BATCH_TIMEOUT = HEALTH_WAIT + 180
MAX_PARALLEL = 32


@dataclass
class Observed:
    """What one host showed: its facts by name, or why they could not be read; SSH commands it took."""

    host: Host
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    commands: int = 0
    firewall_facts: Facts | None = None


def named_facts(expect: Expectations, host: Host) -> dict[str, Fact]:
    """The facts each check of the suite reads on this host, by name."""
    facts: dict[str, Fact] = {
        "os": OsRelease(),
        "cpu_flags": llama_facts.CPU_FLAGS,
        "identity": llama_facts.IDENTITY_MEASURED,
        "current": PathInfo(paths.CURRENT_LINK, False),
        "listening": probes.Listening(),
        "reach": probes.Reachable(expect.probed_by(host)),
    }
    links = expect.fleet.links(host.name)
    if links is not None:
        facts["handshakes"] = probes.Handshakes(links.interface)
    if firewall_role.frontend_choice(host) == "auto":
        facts["frontends"] = firewall_role._facts.FirewallFrontends()
    role = expect.role_of(host)
    if role == "worker":
        facts |= {"service": probes.Service(paths.RPC_UNIT), "established": probes.Established()}
        facts["cache"] = probes.RpcCache()
        facts["cache_entries"] = probes.RpcCacheEntries()
        facts["rpc_announced"] = probes.RpcAnnounced(paths.RPC_UNIT)
    elif role == "balancer":
        address, port = expect.endpoint_probe(host)
        facts |= {
            "service": probes.Service(BALANCER_UNIT),
            "api": probes.HeadApi(address, port, HEALTH_WAIT),
            "rotation": probes.Rotation(),
        }
    elif role == "head":
        address, port = expect.api_probe(host)
        facts |= {
            "service": probes.Service(paths.SERVER_UNIT),
            "model": probes.DeployedModel(),
            "key_file": PathInfo(paths.API_KEY_FILE, True),
            "key_in_arguments": probes.KeyInArguments(),
            "api": probes.HeadApi(address, port, HEALTH_WAIT, *_over_tls(expect, host)),
            "load_log": probes.LoadLog(),
            "rpc_of_build": probes.RpcOfBuild(service_user(expect, host)),
        }
        if expect.head_settings(host).api_tls:
            facts |= {
                "tls_cert": tls_probes.PresentedCertificate(address, port),
                "plain_http": tls_probes.PlainHttp(address, port),
            }
    return facts


def _over_tls(expect: Expectations, host: Host) -> tuple[str, str] | tuple[()]:
    """A head with api_tls is asked over HTTPS: the name its certificate must carry, the CA on the head."""
    head = expect.head_settings(host)
    if not head.api_tls:
        return ()
    return api_tls.verify_name(head, expect.file), tls.CA_FILE


def observe(connection: HostConnection, expect: Expectations) -> Observed:
    """One SSH command: every fact of the host plus its firewall role's facts; the key (head only) on stdin."""
    host = connection.host
    named = named_facts(expect, host)
    firewall = [f for op in expect.firewall_operations(host) for f in op.facts]
    todo = list({f.key: f for f in [*named.values(), *firewall]}.values())
    script, token = batch_script(todo, at_once=True)  # as long as the slowest probe, not their sum
    role = expect.role_of(host)
    head = role in ("head", "balancer")  # the key travels to the API asked from there
    key_of = host if role == "head" else expect.inventory.hosts[expect.fleet.clusters[0].head]
    stdin = (expect.key(key_of) or b"\n") if head else None
    if head:
        script = f"IFS= read -r {probes.KEY_VARIABLE} || true\n{script}"
    observed = Observed(host, commands=1)
    try:
        result = connection.run(script, stdin=stdin, timeout=BATCH_TIMEOUT)
        values = parse_batch(todo, result.stdout, token)
    except LlamafleetError as exc:
        observed.error = str(exc)
        return observed
    except ValueError as exc:  # the batch's output was cut short
        observed.error = f"{host.name}: facts unreadable: {exc}"
        return observed
    observed.facts = {name: values[fact.key] for name, fact in named.items()}
    observed.firewall_facts = Facts(values)
    return observed


def controller_probe(endpoint: str) -> str:
    """Whether this machine (the controller) can open a TCP connection to ip:port (closed at once, nothing sent)."""
    address, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((address, int(port)), timeout=probes.PROBE_SECONDS):
            return "open"
    except OSError:
        return "closed"


@dataclass
class Gathered:
    """Every selected host's observations, the controller's probes and how long reading them took."""

    hosts: dict[str, Observed]
    controller_reach: dict[str, str]
    seconds: float


def gather_all(connections: dict[str, HostConnection], expect: Expectations) -> Gathered:
    """Observe every host in parallel; with a single worker the controller is its outside prober."""
    started = time.monotonic()
    outside = [w.endpoint for w in expect.all_workers if expect.outsider_of(w.name) is None]
    reach: dict[str, str] = {}
    lock = threading.Lock()

    def probe(endpoint: str) -> None:
        answer = controller_probe(endpoint)
        with lock:
            reach[endpoint] = answer

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(connections) + len(outside)) or 1) as pool:
        probing = [pool.submit(probe, endpoint) for endpoint in outside]
        observed = dict(zip(connections, pool.map(lambda c: observe(c, expect), connections.values()), strict=True))
        for done in probing:
            done.result()
    return Gathered(observed, reach, time.monotonic() - started)
