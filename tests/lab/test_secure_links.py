"""Lab tier: a head and 2 workers with `cluster_tunnel: wireguard` (wireguard-go: the lab's kernel has no WireGuard)
and `api_tls: true`: a completion works over HTTPS verified with the inventory's CA and crosses the tunnel, plain
HTTP does not answer, the RPC port is closed outside the tunnel, no private key reaches the controller, a second
run changes nothing, verify passes, a worker's reboot brings its tunnel back, and the cluster switches to none and
back."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from llamafleet import lab as lab_api
from llamafleet import tls
from scripts import make_gguf
from tests.lab.conftest import SESSION_LAB
from tests.lab.labtools import invoke_json, source_vars, ssh

pytestmark = pytest.mark.lab

SECURE_LAB = f"{SESSION_LAB[:8]}sl"  # beside the session's lab, named after it (two checkouts never share one)
RPC_PORT = 50052
LINK_MTU = 9000  # jumbo frames: the tunnel's MTU follows the link's (80 bytes of WireGuard over IPv4 below it)
BACK_SECONDS = 120  # a rebooted worker's cluster answers again within this
WG_KEY = "/etc/wireguard/lfwg0.key"
COUNTERS = "cat /sys/class/net/lfwg0/statistics/rx_bytes /sys/class/net/lfwg0/statistics/tx_bytes"


@pytest.fixture(scope="module")
def secure_lab():
    """The lab, its inventory turned to cluster_tunnel: wireguard and api_tls: true; removed at the end."""
    try:
        info = lab_api.up(SECURE_LAB, workers=2, firewall="nftables", link_mtu=LINK_MTU)
        data = yaml.safe_load(Path(info.inventory).read_text())
        data["all"]["vars"].update({"cluster_tunnel": "wireguard", "api_tls": True})
        Path(info.inventory).write_text(yaml.safe_dump(data, sort_keys=False))
        yield info
    finally:
        lab_api.down(SECURE_LAB)


def run(task: str, lab, env, source: str, *extra: str) -> dict:
    code, doc = invoke_json(task, lab.inventory, env, *source_vars(source), *extra)
    bad = [f"{r['host']}: {r['role']}: {r['operation']}: {r['reason']}" for r in doc.get("results", [])
           if r["status"] in ("failed", "unreachable")]  # fmt: skip
    assert code == 0, bad or doc.get("messages")
    return doc


def changed(doc: dict) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in doc["recap"].items() if counts.get("changed")}


@pytest.fixture(scope="module")
def served(secure_lab, env, source, tmp_path_factory) -> Path:
    """Provisioned and a model deployed; the model's path."""
    model = tmp_path_factory.mktemp("secure-model") / "secure.gguf"
    make_gguf.make_model(model, size="1M", seed=7)
    run("provision", secure_lab, env, source)
    run("deploy", secure_lab, env, source, "--model", str(model))
    return model


def completion(lab, tokens: int = 4) -> str | None:
    """A completion from the head over HTTPS, trusting the inventory's CA only: None when it answered, else why not."""
    key = Path(lab.inventory).with_suffix(".api-key").read_text().split()[0]
    ca_file, _ = tls.ca_paths(Path(lab.inventory))
    try:
        answer = requests.post(
            f"https://{lab.host('head').address}:8080/completion",
            json={"prompt": "hello", "n_predict": tokens, "ignore_eos": True},
            headers={"Authorization": f"Bearer {key}"},
            verify=str(ca_file),
            timeout=60,
        )
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {exc}"
    if answer.status_code != 200 or answer.json().get("tokens_predicted") != tokens:
        return f"HTTP {answer.status_code}: {answer.text[:200]}"
    return None


def reachable(lab, host: str, address: str, port: int = RPC_PORT) -> bool:
    probe = f"timeout 3 bash -c ': <>/dev/tcp/{address}/{port}' 2>/dev/null && echo open || echo closed"
    return ssh(lab, host, probe).stdout.strip() == "open"


def counters(lab, host: str) -> int:
    return sum(int(n) for n in ssh(lab, host, COUNTERS).stdout.split())


def serving_again(lab, deadline: float) -> str | None:
    error = "not asked"
    while time.monotonic() < deadline:
        error = completion(lab)
        if error is None:
            return None
        time.sleep(2)
    return error


def test_a_completion_over_https_crosses_the_tunnel(secure_lab, served):
    ca_file, ca_key = tls.ca_paths(Path(secure_lab.inventory))
    assert (ca_key.stat().st_mode & 0o777) == 0o600
    before = counters(secure_lab, "head")
    assert completion(secure_lab) is None
    assert counters(secure_lab, "head") > before
    with pytest.raises(requests.exceptions.SSLError):  # trusted by that CA only
        requests.get(f"https://{secure_lab.host('head').address}:8080/health", timeout=10)
    listening = ssh(secure_lab, "w1", f"ss -Hltn 'sport = :{RPC_PORT}'").stdout.split()
    assert "10.203.61.2:50052" in listening  # the tunnel address only, not the lab's
    assert "--rpc 10.203.61.2:50052,10.203.61.3:50052" in ssh(secure_lab, "head", "systemctl cat llama-server").stdout


def test_the_tunnel_takes_its_mtu_from_the_hosts_link(secure_lab, served):
    for host in ("head", "w1"):
        sizes = ssh(secure_lab, host, "cat /sys/class/net/host0/mtu /sys/class/net/lfwg0/mtu").stdout.split()
        assert sizes == [str(LINK_MTU), str(LINK_MTU - 80)], host
    assert Path(f"/sys/class/net/{secure_lab.host('w2').veth}/mtu").read_text().strip() == str(LINK_MTU)


def test_plain_http_does_not_answer(secure_lab, served):
    with socket.create_connection((secure_lab.host("head").address, 8080), timeout=10) as conn:
        conn.settimeout(10)
        conn.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        try:
            answer = conn.recv(64)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer


def test_the_rpc_port_is_closed_on_the_underlay_also_to_the_head(secure_lab, served):
    assert not reachable(secure_lab, "head", secure_lab.host("w1").address)
    assert not reachable(secure_lab, "w2", "10.203.61.2")  # a worker is no head, inside the tunnel or not
    assert reachable(secure_lab, "head", "10.203.61.2")


def test_private_keys_stay_on_their_hosts(secure_lab, served, env):
    keys = [ssh(secure_lab, host.name, f"cat {WG_KEY}").stdout.strip() for host in secure_lab.hosts]
    assert all(re.fullmatch(r"[A-Za-z0-9+/]{43}=", key) for key in keys), "every host has its WireGuard key"
    assert ssh(secure_lab, "w1", f"stat -c %a:%U {WG_KEY}").stdout.strip() == "600:root"
    shown = ssh(secure_lab, "head", f"stat -c '%a %U' {tls.KEY_FILE} && openssl pkey -in {tls.KEY_FILE}")
    assert shown.returncode == 0 and shown.stdout.startswith("600 root"), shown.stderr
    tls_key = "".join(shown.stdout.strip().splitlines()[2:-1])[:60]  # a line of the PEM body
    folders = [str(Path(secure_lab.inventory).parent), env["LLAMAFLEET_CACHE"], str(Path.home() / ".cache")]
    for secret in [*keys, tls_key]:
        found = subprocess.run(["grep", "-rlsF", secret, *folders], capture_output=True, text=True, timeout=120)
        assert found.stdout == "", found.stdout


def test_a_second_provision_and_deploy_change_nothing(secure_lab, served, env, source):
    assert changed(run("provision", secure_lab, env, source)) == {}
    assert changed(run("deploy", secure_lab, env, source, "--model", str(served))) == {}


def test_verify_passes_with_its_tunnel_and_tls_checks(secure_lab, served, env, source):
    code, doc = invoke_json("verify", secure_lab.inventory, env, *source_vars(source))
    checks = {host: {c["test"].split("[")[0]: c["status"] for c in found} for host, found in doc["hosts"].items()}
    wanted = {
        "head": ("test_api_certificate_from_the_ca", "test_plain_http_not_served", "test_tunnel_handshakes_recent"),
        "w1": ("test_tunnel_handshakes_recent", "test_rpc_closed_on_the_underlay", "test_rpc_in_use_by_head"),
    }
    for host, names in wanted.items():
        assert {name: checks[host].get(name) for name in names} == dict.fromkeys(names, "passed"), checks[host]
    assert code == 0, {host: [n for n, s in found.items() if s == "failed"] for host, found in checks.items()}


def test_a_worker_s_reboot_brings_its_tunnel_back_by_itself(secure_lab, served):
    lab_api.reboot(SECURE_LAB, "w1")
    assert serving_again(secure_lab, time.monotonic() + BACK_SECONDS) is None
    shown = ssh(secure_lab, "w1", "systemctl is-active wg-quick@lfwg0 llama-rpc").stdout.split()
    assert shown == ["active", "active"]


def test_switching_to_none_and_back_serves_after_each(secure_lab, served, env, source):
    run("provision", secure_lab, env, source, "-e", "cluster_tunnel=none")
    assert serving_again(secure_lab, time.monotonic() + BACK_SECONDS) is None
    gone = ssh(secure_lab, "w1", f"ip link show lfwg0; ss -Hltn 'sport = :{RPC_PORT}'").stdout
    assert "lfwg0" not in gone and f"{secure_lab.host('w1').address}:{RPC_PORT}" in gone
    run("provision", secure_lab, env, source)
    assert serving_again(secure_lab, time.monotonic() + BACK_SECONDS) is None
    assert "10.203.61.2:50052" in ssh(secure_lab, "w1", f"ss -Hltn 'sport = :{RPC_PORT}'").stdout
