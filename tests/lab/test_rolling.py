"""Lab tier: 2 clusters (a head and a worker each) behind a balancer: a rolling deploy and reboots, with clients
asking through the balancer's endpoint all along. Cluster c1 has `cluster_tunnel: wireguard`, so the balancer
reaches its head through WireGuard (and c2's at its own address): verify checks both, and c1's head reboots with
its tunnel to the balancer. Every command logs in as a user with sudo, as on most fleets.

Two clusters of one worker each: the smallest lab where one cluster serves while the other changes, and the
worker's reboot is covered; a second worker per cluster would add two hosts and nothing the scenario checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml

from llamafleet import haproxy
from llamafleet import lab as lab_api
from scripts import make_gguf
from scripts.endpoint_clients import Clients, Outcome, ask, failed, served_by, summary
from tests.lab.conftest import SESSION_LAB, add_admin
from tests.lab.labtools import invoke_json, source_vars, ssh

pytestmark = pytest.mark.lab

ROLLING_LAB = f"{SESSION_LAB[:8]}rl"  # beside the session's lab, named after it (two checkouts never share one)
CLIENT_SECONDS = 240  # the client loops stop by themselves after this, whatever happens
BACK_SECONDS = 120  # a rebooted host's cluster is back in rotation within this


@pytest.fixture(scope="module")
def fleet_lab():
    """c1-head, c1-w1 (in WireGuard), c2-head, c2-w1 and lb1, logged into as a user with sudo (asking its password
    on c1-w1, c2-head and lb1); removed at the end of the module."""
    try:
        info = lab_api.up(ROLLING_LAB, clusters=2, workers=1, balancers=1)
        data = yaml.safe_load(Path(info.inventory).read_text())
        data["all"]["vars"].update(add_admin(info, lambda name: name in ("c1-w1", "c2-head", "lb1")))
        for group in ("head", "workers"):
            for name, host in data["all"]["children"][group]["hosts"].items():
                if name.startswith("c1-"):
                    host["cluster_tunnel"] = "wireguard"
        Path(info.inventory).write_text(yaml.safe_dump(data, sort_keys=False))
        yield info
    finally:
        lab_api.down(ROLLING_LAB)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rolling-models")
    made = {"a": folder / "rolling-a.gguf", "b": folder / "rolling-b.gguf"}
    for seed, path in enumerate(made.values(), 1):
        make_gguf.make_model(path, size="1M", seed=seed)
    return made


@pytest.fixture(scope="module")
def endpoint(fleet_lab, deployed_a) -> tuple[str, str]:
    """The balancer's URL and the API key (provision made it)."""
    key = Path(fleet_lab.inventory).with_suffix(".api-key")
    return f"http://{fleet_lab.host('lb1').address}:8080", key.read_text().split()[0]


def cli(task: str, lab, env, source: str, *extra: str) -> dict:
    code, doc = invoke_json(task, lab.inventory, env, *source_vars(source), *extra)
    bad = [f"{r['host']}: {r['role']}: {r['operation']}: {r['reason']}" for r in doc["results"] if r["status"] in
           ("failed", "unreachable")]  # fmt: skip
    assert code == 0, bad or doc["messages"]
    return doc


def changed(doc: dict) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in doc["recap"].items() if counts.get("changed")}


def model_of(path: Path) -> str:
    """The "model" field llama-server answers with: the deployed file's path on the head."""
    return f"/var/lib/llamafleet/models/{path.name}"


def servers(lab) -> dict[str, haproxy.Server]:
    shown = ssh(lab, "lb1", haproxy.show_servers())
    assert shown.returncode == 0, shown.stderr
    return haproxy.parse_servers(shown.stdout.splitlines())


def back_in_rotation(lab, cluster: str, since: float, serving: Callable[[], bool]) -> float:
    """Seconds after `since` (monotonic) until `cluster`'s head serves again (`serving`) and is in rotation,
    polled every second."""
    while time.monotonic() - since < BACK_SECONDS:
        if serving() and servers(lab)[cluster].in_rotation:
            return time.monotonic() - since
        time.sleep(1)
    pytest.fail(f"{cluster} not back in rotation {BACK_SECONDS} s after the reboot: {servers(lab)[cluster]}")


def started_at(lab, host: str, unit: str) -> int:
    shown = ssh(lab, host, f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}")
    return int(shown.stdout.strip() or 0)


@pytest.fixture(scope="module")
def deployed_a(fleet_lab, env, source, models):
    """provision, then deploy of model A, through the CLI as users run it; the endpoint answers."""
    provisioned = cli("provision", fleet_lab, env, source)
    deployed = cli("deploy", fleet_lab, env, source, "--model", str(models["a"]))
    return provisioned, deployed


def test_provision_and_deploy_bring_both_clusters_into_the_balancer(fleet_lab, deployed_a, endpoint, models):
    assert {name: s.in_rotation for name, s in servers(fleet_lab).items()} == {"c1": True, "c2": True}
    answer = ask(*endpoint, stream=False)
    assert (answer.error, answer.model) == (None, model_of(models["a"]))


def test_the_endpoint_refuses_a_request_without_the_key_the_head_says_so(deployed_a, endpoint):
    url, _ = endpoint
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        reply = requests.post(f"{url}/v1/chat/completions", json={"messages": []}, headers=headers, timeout=30)
        assert (reply.status_code, reply.headers.get("server")) == (401, "llama.cpp"), reply.text
        assert reply.json()["error"]["type"] == "authentication_error"


@pytest.fixture(scope="module")
def rolled_b(fleet_lab, env, source, models, endpoint, deployed_a):
    """A rolling deploy of model B while two clients (one streaming) ask through the endpoint; the outcomes and
    when the deploy returned."""
    with Clients(*endpoint, seconds=CLIENT_SECONDS) as clients:
        time.sleep(2)
        doc = cli("deploy", fleet_lab, env, source, "--model", str(models["b"]))
        returned = time.monotonic()
        time.sleep(3)
    return clients.stop(), returned, doc


def test_a_rolling_deploy_fails_no_request_and_the_new_model_answers_after_it(rolled_b, models):
    outcomes, returned, doc = rolled_b
    assert failed(outcomes) == [], summary(outcomes)
    assert served_by(outcomes, returned) == {model_of(models["b"])}, summary(outcomes)
    assert served_by(outcomes, 0) == {model_of(models["a"]), model_of(models["b"])}, "asked before the switch too"
    assert sum(o.stream for o in outcomes) > 10 and sum(not o.stream for o in outcomes) > 10, summary(outcomes)
    said = [m for m in doc["messages"] if m.startswith("rolling:")]
    assert said == [
        "rolling: cluster c1: out of rotation, deploying rolling-b.gguf",
        "rolling: cluster c1: back in rotation",
        "rolling: cluster c2: out of rotation, deploying rolling-b.gguf",
        "rolling: cluster c2: back in rotation",
    ], doc["messages"]


def test_verify_passes_with_the_balancer_reaching_c1_through_the_tunnel(fleet_lab, env, source, rolled_b):
    code, doc = invoke_json("verify", fleet_lab.inventory, env, *source_vars(source))
    checks = {host: {c["test"].split("[")[0]: c["status"] for c in found} for host, found in doc["hosts"].items()}
    wanted = {
        "lb1": ("test_tunnel_handshakes_recent", "test_tunnelled_heads_reached_through_the_tunnel_only",
                "test_heads_reachable_from_the_balancer", "test_every_head_in_rotation"),
        "c1-head": ("test_tunnel_handshakes_recent", "test_api_closed_to_all_but_the_balancers"),
        "c2-head": ("test_api_closed_to_all_but_the_balancers",),
    }  # fmt: skip
    for host, names in wanted.items():
        assert {name: checks[host].get(name) for name in names} == dict.fromkeys(names, "passed"), checks[host]
    assert code == 0, {host: [n for n, s in found.items() if s == "failed"] for host, found in checks.items()}
    shown = ssh(fleet_lab, "lb1", "wg show lfwg0 allowed-ips; grep -h ' server ' /etc/haproxy/haproxy.cfg").stdout
    assert "10.203.62.1/32" in shown and "10.203.62.1:8080" in shown, shown


def test_a_second_provision_and_deploy_change_nothing(fleet_lab, env, source, models, rolled_b):
    starts = {host: started_at(fleet_lab, host, "llama-server") for host in ("c1-head", "c2-head")}
    assert changed(cli("provision", fleet_lab, env, source)) == {}
    assert changed(cli("deploy", fleet_lab, env, source, "--model", str(models["b"]))) == {}
    assert {host: started_at(fleet_lab, host, "llama-server") for host in starts} == starts


def head_started_after(lab, head: str, before: int) -> Callable[[], bool]:
    """Whether the head's llama-server is active and (re)started after `before` (its ActiveEnter time, or 0)."""

    def serving() -> bool:
        shown = ssh(lab, head, "systemctl show -p ActiveState,ActiveEnterTimestampMonotonic --value llama-server")
        state, entered = (shown.stdout.split() + ["", "0"])[:2]
        return state == "active" and int(entered) > before

    return serving


def balancer_log(lab) -> str:
    """HAProxy's word on the last minutes, for a failure's message: the servers' state changes and each request that
    ended in an error (server, timers, status, termination state, retries)."""
    try:
        shown = ssh(lab, "lb1", "journalctl -u haproxy --since -5min -o short-monotonic --no-pager | "
                    "grep -E ' 5[0-9][0-9] |is (UP|DOWN)| [a-zA-Z][a-zA-Z]-- ' | tail -n 40")  # fmt: skip
    except Exception as exc:  # the failure being reported matters more than its context
        return f"\nhaproxy on lb1: its log could not be read: {exc}"
    return "\nhaproxy on lb1:\n" + shown.stdout


def rebooted_under_load(lab, endpoint, host: str, cluster: str, serving: Callable[[], bool]) -> list[Outcome]:
    """lab.reboot of `host` while the clients ask, until its cluster serves and is in rotation again, then 3 s
    more (the clients reach it again); every outcome."""
    with Clients(*endpoint, seconds=CLIENT_SECONDS) as clients:
        time.sleep(2)
        started = time.monotonic()
        lab_api.reboot(lab.name, host)
        back_in_rotation(lab, cluster, started, serving)
        time.sleep(3)
    return clients.stop()


def test_a_head_reboot_fails_no_request_and_its_cluster_comes_back_by_itself(rolled_b, fleet_lab, endpoint, models):
    boot = ssh(fleet_lab, "c1-head", "cat /proc/sys/kernel/random/boot_id").stdout
    before = servers(fleet_lab)["c1"]
    outcomes = rebooted_under_load(fleet_lab, endpoint, "c1-head", "c1", head_started_after(fleet_lab, "c1-head", 0))
    assert ssh(fleet_lab, "c1-head", "cat /proc/sys/kernel/random/boot_id").stdout != boot
    assert failed(outcomes) == [], summary(outcomes) + balancer_log(fleet_lab)
    assert served_by(outcomes, 0) == {model_of(models["b"])}
    assert before.in_rotation


def test_a_worker_reboot_restarts_its_head_and_the_cluster_serves_again_by_itself(rolled_b, fleet_lab, endpoint):
    """llama-server aborts when it loses a worker; systemd restarts it once the worker's port accepts again. A
    stream the head was sending at that instant is cut; nothing else fails (the balancer sends the rest on)."""
    head_started = started_at(fleet_lab, "c2-head", "llama-server")
    serving = head_started_after(fleet_lab, "c2-head", head_started)
    outcomes = rebooted_under_load(fleet_lab, endpoint, "c2-w1", "c2", serving)
    assert [o for o in failed(outcomes) if not o.stream] == [], summary(outcomes) + balancer_log(fleet_lab)
    after = ask(*endpoint, stream=True)
    assert after.error is None and servers(fleet_lab)["c2"].in_rotation
