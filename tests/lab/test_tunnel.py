"""Lab tier: a head and 2 workers with `cluster_tunnel: wireguard` (wireguard-go: the lab's kernel may have no
WireGuard): completions cross the tunnel, the RPC port is closed outside it, the keys stay on the hosts, a second
run changes nothing, a worker's reboot brings its tunnel back, and the cluster switches to none and back."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from llamafleet import lab as lab_api
from scripts import make_gguf
from scripts.endpoint_clients import ask
from tests.lab.conftest import SESSION_LAB
from tests.lab.labtools import invoke_json, source_vars, ssh

pytestmark = pytest.mark.lab

TUNNEL_LAB = f"{SESSION_LAB[:8]}tu"  # beside the session's lab, named after it (two checkouts never share one)
RPC_PORT = 50052
BACK_SECONDS = 120  # a rebooted worker's cluster answers again within this
KEY = "/etc/wireguard/lfwg0.key"
COUNTERS = "cat /sys/class/net/lfwg0/statistics/rx_bytes /sys/class/net/lfwg0/statistics/tx_bytes"


@pytest.fixture(scope="module")
def tunnel_lab(tmp_path_factory):
    """The lab, its inventory turned to cluster_tunnel: wireguard; removed at the end of the module."""
    try:
        info = lab_api.up(TUNNEL_LAB, workers=2, firewall="nftables")
        data = yaml.safe_load(Path(info.inventory).read_text())
        data["all"]["vars"]["cluster_tunnel"] = "wireguard"
        Path(info.inventory).write_text(yaml.safe_dump(data, sort_keys=False))
        yield info
    finally:
        lab_api.down(TUNNEL_LAB)


def run(task: str, lab, env, source: str, *extra: str) -> dict:
    code, doc = invoke_json(task, lab.inventory, env, *source_vars(source), *extra)
    bad = [f"{r['host']}: {r['operation']}: {r['reason']}" for r in doc["results"] if r["status"] == "failed"]
    assert code == 0, bad or doc["messages"]
    return doc


def changed(doc: dict) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in doc["recap"].items() if counts.get("changed")}


@pytest.fixture(scope="module")
def served(tunnel_lab, env, source, tmp_path_factory) -> Path:
    """Provisioned and a model deployed, through the tunnel; the model's path."""
    model = tmp_path_factory.mktemp("tunnel-model") / "tunnel.gguf"
    make_gguf.make_model(model, size="1M", seed=7)
    run("provision", tunnel_lab, env, source)
    run("deploy", tunnel_lab, env, source, "--model", str(model))
    return model


def completion(lab) -> str | None:
    """A chat completion from the head: None when it answered, else why not."""
    key = Path(lab.inventory).with_suffix(".api-key").read_text().split()[0]
    return ask(f"http://{lab.host('head').address}:8080", key, stream=False).error


def reachable(lab, host: str, address: str, port: int = RPC_PORT) -> bool:
    probe = f"timeout 3 bash -c ': <>/dev/tcp/{address}/{port}' 2>/dev/null && echo open || echo closed"
    return ssh(lab, host, probe).stdout.strip() == "open"


def counters(lab, host: str) -> int:
    return sum(int(n) for n in ssh(lab, host, COUNTERS).stdout.split())


def test_completions_cross_the_tunnel(tunnel_lab, served):
    before = counters(tunnel_lab, "head")
    assert completion(tunnel_lab) is None
    assert counters(tunnel_lab, "head") > before
    listening = ssh(tunnel_lab, "w1", f"ss -Hltn 'sport = :{RPC_PORT}'").stdout.split()
    assert "10.203.61.2:50052" in listening  # the tunnel address only, not the lab's
    assert "--rpc 10.203.61.2:50052,10.203.61.3:50052" in ssh(tunnel_lab, "head", "systemctl cat llama-server").stdout


def test_the_rpc_port_is_closed_on_the_underlay_also_to_the_head(tunnel_lab, served):
    w1 = tunnel_lab.host("w1").address
    assert not reachable(tunnel_lab, "head", w1)
    assert not reachable(tunnel_lab, "w2", "10.203.61.2")  # a worker is no head, inside the tunnel or not
    assert reachable(tunnel_lab, "head", "10.203.61.2")


def test_private_keys_stay_on_their_hosts(tunnel_lab, served, env):
    keys = [ssh(tunnel_lab, host.name, f"cat {KEY}").stdout.strip() for host in tunnel_lab.hosts]
    assert all(re.fullmatch(r"[A-Za-z0-9+/]{43}=", key) for key in keys), "every host has its key"
    assert ssh(tunnel_lab, "w1", f"stat -c %a:%U {KEY}").stdout.strip() == "600:root"
    folders = [str(Path(tunnel_lab.inventory).parent), env["LLAMAFLEET_CACHE"], str(Path.home() / ".cache")]
    for key in keys:
        found = subprocess.run(["grep", "-rlsF", key, *folders], capture_output=True, text=True, timeout=120)
        assert found.stdout == "", found.stdout


def test_a_second_provision_and_deploy_change_nothing(tunnel_lab, served, env, source):
    assert changed(run("provision", tunnel_lab, env, source)) == {}
    assert changed(run("deploy", tunnel_lab, env, source, "--model", str(served))) == {}


def serving_again(lab, deadline: float) -> str | None:
    error = "not asked"
    while time.monotonic() < deadline:
        error = completion(lab)
        if error is None:
            return None
        time.sleep(2)
    return error


def test_a_worker_s_reboot_brings_its_tunnel_back_by_itself(tunnel_lab, served):
    lab_api.reboot(TUNNEL_LAB, "w1")
    assert serving_again(tunnel_lab, time.monotonic() + BACK_SECONDS) is None
    shown = ssh(tunnel_lab, "w1", "systemctl is-active wg-quick@lfwg0 llama-rpc").stdout.split()
    assert shown == ["active", "active"]


def test_switching_to_none_and_back_serves_after_each(tunnel_lab, served, env, source):
    run("provision", tunnel_lab, env, source, "-e", "cluster_tunnel=none")
    assert serving_again(tunnel_lab, time.monotonic() + BACK_SECONDS) is None
    gone = ssh(tunnel_lab, "w1", f"ip link show lfwg0; ss -Hltn 'sport = :{RPC_PORT}'").stdout
    assert "lfwg0" not in gone and f"{tunnel_lab.host('w1').address}:{RPC_PORT}" in gone
    run("provision", tunnel_lab, env, source)
    assert serving_again(tunnel_lab, time.monotonic() + BACK_SECONDS) is None
    assert "10.203.61.2:50052" in ssh(tunnel_lab, "w1", f"ss -Hltn 'sport = :{RPC_PORT}'").stdout
