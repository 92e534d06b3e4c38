"""firewalld closes the RPC and API ports in every zone: hosts with a second interface in an accepting zone
(trusted), and a zone made after provision, let nobody but the cluster in; verify fails when the policy's drop
is removed by hand, and provision puts it back. A lab of its own: the session's has no firewalld host. It runs
after test_llama_cpp.py (files run in name order), whose first provision is the session's one build.

The second network is a network namespace of this machine (the outsider) with a bridge, joined by a veth
to an `eth1` in each host, routed so that the outsider also reaches the hosts' cluster addresses through it.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from llamafleet import lab as lab_api
from llamafleet.lab import network
from scripts import make_gguf
from tests.lab.conftest import SESSION_LAB
from tests.lab.labtools import invoke_json, source_vars, ssh

ZONES_LAB = SESSION_LAB[:9] + "z"  # a lab name of its own (at most 10 characters), beside the session's
RPC, API = 50052, 8080
TRUST_ETH1 = (
    "firewall-cmd -q --zone=trusted --change-interface=eth1 && firewall-cmd -q --permanent --zone=trusted "
    "--add-interface=eth1 && firewall-cmd --get-zone-of-interface=eth1"
)
# A zone made after provision, accepting everything, that eth1 moves into.
LATER_ZONE = (
    "firewall-cmd -q --permanent --new-zone=later && firewall-cmd -q --permanent --zone=later --set-target=ACCEPT"
    " && firewall-cmd -q --permanent --zone=trusted --remove-interface=eth1"
    " && firewall-cmd -q --permanent --zone=later --add-interface=eth1 && firewall-cmd -q --reload"
    " && firewall-cmd --get-zone-of-interface=eth1"
)
DROP = 'rule family="ipv4" source NOT ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" drop'
PROBED = ("w1 rpc", "w1 rpc on eth1", "head api", "head api on eth1")
FILTERED = dict.fromkeys(PROBED, "filtered")


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


@contextlib.contextmanager
def outsider(info) -> Iterator[dict[str, str]]:
    """A namespace on a second network with each host (its eth1); host -> its eth1 address. Removed afterwards."""
    namespace, subnet = f"lfz-{info.name}", network.pick_subnet(f"{info.name}-outside", [info.subnet])
    addresses = {host.name: str(subnet.network_address + 2 + i) for i, host in enumerate(info.hosts)}
    run("ip", "netns", "add", namespace)
    try:
        inside = ("ip", "-n", namespace)
        run(*inside, "link", "add", "br0", "type", "bridge")
        run(*inside, "addr", "add", f"{subnet.network_address + 1}/{subnet.prefixlen}", "dev", "br0")
        run(*inside, "link", "set", "br0", "up")
        for host in info.hosts:
            near, far = f"lfz{info.name}{host.name[0]}", f"lfy{info.name}{host.name[0]}"
            run("ip", "link", "add", near, "type", "veth", "peer", "name", far)
            run("ip", "link", "set", near, "netns", namespace)
            run(*inside, "link", "set", near, "master", "br0", "up")
            run("ip", "link", "set", far, "netns", str(host.init_pid))
            container = ("nsenter", "-t", str(host.init_pid), "-n", "ip")
            run(*container, "link", "set", far, "name", "eth1")
            run(*container, "addr", "add", f"{addresses[host.name]}/{subnet.prefixlen}", "dev", "eth1")
            run(*container, "link", "set", "eth1", "up")
            run(*inside, "route", "add", f"{host.address}/32", "via", addresses[host.name])
        yield {"namespace": namespace, **addresses}
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=60)


def probe(namespace: str, address: str, port: int) -> str:
    """From the outsider: open (connected), refused (the firewall let it through to a closed port) or filtered."""
    connect = f': <>"/dev/tcp/{address}/{port}"'
    argv = ["ip", "netns", "exec", namespace, "timeout", "3", "bash", "-c", connect]
    code = subprocess.run(argv, capture_output=True, timeout=30).returncode
    return {0: "open", 124: "filtered"}.get(code, "refused")


@pytest.fixture(scope="module")
def zones(env, source, tmp_path_factory):
    """The lab (head and w1 with firewalld), eth1 of each in zone trusted, then provisioned and deployed."""
    model = tmp_path_factory.mktemp("zones-model") / "tiny-zones.gguf"
    make_gguf.make_model(model, size="1M", seed=7)
    info = lab_api.up(ZONES_LAB, workers=1, firewall="firewalld")
    try:
        with outsider(info) as outside:
            for host in ("head", "w1"):
                assert ssh(info, host, TRUST_ETH1).stdout.strip() == "trusted", host
            for task, extra in (("provision", ()), ("deploy", ("--model", str(model)))):
                code, doc = invoke_json(task, info.inventory, env, *extra, *source_vars(source))
                assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
            yield info, outside
    finally:
        lab_api.down(ZONES_LAB)


def closed_ports(info, outside) -> dict[str, str]:
    """What the outsider finds on w1's RPC port and the head's API port, at the cluster and at the eth1 address."""
    ns, head, w1 = outside["namespace"], info.host("head"), info.host("w1")
    return {
        "w1 rpc": probe(ns, w1.address, RPC),
        "w1 rpc on eth1": probe(ns, outside["w1"], RPC),
        "head api": probe(ns, head.address, API),
        "head api on eth1": probe(ns, outside["head"], API),
    }


def test_an_accepting_zone_on_a_second_interface_reaches_neither_rpc_nor_api(zones):
    info, outside = zones
    assert probe(outside["namespace"], outside["w1"], 22) == "open", "the outsider's network works, eth1 is trusted"
    assert closed_ports(info, outside) == FILTERED


def test_a_zone_made_after_provision_is_closed_too_and_verify_passes(zones, env, source):
    info, outside = zones
    assert ssh(info, "w1", LATER_ZONE).stdout.strip() == "later"
    assert closed_ports(info, outside)["w1 rpc"] == "filtered"
    code, doc = invoke_json("verify", info.inventory, env, *source_vars(source))
    assert code == 0, [
        (h, c["test"], c["found"]) for h, cs in doc["hosts"].items() for c in cs if c["status"] == "failed"
    ]


def test_verify_fails_when_the_drop_is_removed_by_hand_and_provision_puts_it_back(zones, env, source):
    info, outside = zones
    removed = ssh(info, "w1", f"firewall-cmd --policy=llamafleet --remove-rich-rule='{DROP}'")
    assert removed.returncode == 0, removed.stderr
    assert closed_ports(info, outside)["w1 rpc"] == "open", "without the drop the accepting zone lets everyone in"
    code, doc = invoke_json("verify", info.inventory, env, *source_vars(source))
    failed = [(h, c["test"]) for h, cs in doc["hosts"].items() for c in cs if c["status"] == "failed"]
    assert (code, failed) == (1, [("w1", "test_firewall_rules")]), doc["hosts"]
    code, doc = invoke_json("provision", info.inventory, env, *source_vars(source))
    assert code == 0 and (doc["recap"]["head"]["changed"], doc["recap"]["w1"]["changed"]) == (0, 1), doc["recap"]
    assert closed_ports(info, outside) == FILTERED
