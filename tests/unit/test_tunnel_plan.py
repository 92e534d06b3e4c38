"""cluster_tunnel: wireguard: tunnel addresses from the subnet, what is refused, the wg-quick configuration each host
gets, the firewall's rules with and without the tunnel, and the facts read about it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inventory_tree import write_tree

from llamafleet import cluster, inventory, render
from llamafleet.errors import InventoryError
from llamafleet.facts import FileState
from llamafleet.operations import Change, Facts, NoChange
from llamafleet.roles.firewall import facts as firewall_facts
from llamafleet.roles.firewall import nftables, rules, ufw
from llamafleet.roles.rpc_worker import role as worker_role
from llamafleet.roles.tunnel import keys, wireguard

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded" / "tunnel"

CLUSTER = """\
all:
  vars:
    llama_cpp_version: b11434
    cluster_tunnel: wireguard
    api_key_file: null
  children:
    head:
      hosts:
        gpu: {{ansible_host: 192.168.1.10}}
    workers:
      hosts:
        w1: {{ansible_host: 192.168.1.11}}
        w2: {{ansible_host: 192.168.1.12}}
{more}"""


def fleet(tmp_path, more: str = "", **replace: str) -> cluster.Fleet:
    text = CLUSTER.format(more=more)
    for old, new in replace.items():
        text = text.replace(old, new)
    return cluster.fleet(inventory.load(write_tree(tmp_path, {"hosts.yml": text})))


def refusal(tmp_path, **replace: str) -> str:
    with pytest.raises(InventoryError) as caught:
        fleet(tmp_path, **replace)
    return str(caught.value)


def test_the_head_gets_the_first_address_and_each_worker_the_next_in_inventory_order(tmp_path):
    [view] = fleet(tmp_path).clusters
    assert view.tunnel.addresses == (("gpu", "10.203.61.1"), ("w1", "10.203.61.2"), ("w2", "10.203.61.3"))
    assert view.rpc_servers == "10.203.61.2:50052,10.203.61.3:50052"
    assert view.head_address == "10.203.61.1"  # the one address the workers admit
    assert [(w.bind, w.host_address) for w in view.workers] == [
        ("10.203.61.2", "192.168.1.11"),
        ("10.203.61.3", "192.168.1.12"),
    ]
    # Outside the tunnel nothing moved: the cluster's own addresses, and who may reach the API.
    assert view.addresses == ("192.168.1.10", "192.168.1.11", "192.168.1.12") == view.api_allow


def test_a_worker_added_at_the_end_renumbers_nobody(tmp_path):
    before = dict(fleet(tmp_path / "a").clusters[0].tunnel.addresses)
    after = dict(fleet(tmp_path / "b", "        w3: {ansible_host: 192.168.1.13}\n").clusters[0].tunnel.addresses)
    assert after == {**before, "w3": "10.203.61.4"}


def test_without_the_tunnel_the_cluster_is_what_it_was(tmp_path):
    [view] = fleet(tmp_path, **{"cluster_tunnel: wireguard": "cluster_tunnel: none"}).clusters
    assert view.tunnel is None and view.rpc_servers == "192.168.1.11:50052,192.168.1.12:50052"
    assert view.head_address == view.head_host_address == "192.168.1.10"


@pytest.mark.parametrize(
    ("subnet", "why"),
    [
        ("192.168.1.0/24", "holds 192.168.1.10, an address a host is reached at outside the tunnel"),
        ("0.0.0.0/0", "is not a private IPv4 network"),
        ("8.8.8.0/24", "is not a private IPv4 network"),
        ("127.0.0.0/8", "is not a private IPv4 network"),
        ("10.203.61.5/24", "no host bits set"),
        ("fd00::/64", "is not an IPv4 network"),
        ("10.9.9.0/30", "has no room for 3 host addresses"),
        ("'10.0.0.0/8; rm -rf /'", "is not an IPv4 network"),
    ],
)
def test_hostile_or_overlapping_subnets_are_one_line_naming_file_host_and_key(tmp_path, subnet, why):
    message = refusal(
        tmp_path, **{"llama_cpp_version: b11434": f"llama_cpp_version: b11434\n    cluster_tunnel_subnet: {subnet}"}
    )
    assert "\n" not in message
    assert "hosts.yml" in message and "host gpu" in message and "cluster_tunnel_subnet" in message and why in message


def test_a_worker_with_another_tunnel_than_its_head_is_refused_naming_it(tmp_path):
    message = refusal(
        tmp_path, **{"w2: {ansible_host: 192.168.1.12}": "w2: {ansible_host: 192.168.1.12, cluster_tunnel: none}"}
    )
    assert "host w2" in message and "cluster_tunnel" in message and "head gpu" in message


def test_the_head_peers_with_its_workers_and_a_worker_with_its_head_with_no_key_in_the_file(tmp_path):
    links = fleet(tmp_path).links
    keys_ = {"gpu": "G" * 43 + "=", "w1": "A" * 43 + "=", "w2": "B" * 43 + "="}
    head = wireguard.render_config(links("gpu"), "gpu", keys_)
    assert head == (RECORDED / "lfwg0-head.conf").read_text()
    worker = wireguard.render_config(links("w1"), "w1", keys_)
    assert "Address = 10.203.61.2/24" in worker and f"PublicKey = {keys_['gpu']}" in worker
    assert "Endpoint = 192.168.1.10:51820" in worker and "AllowedIPs = 10.203.61.1/32" in worker
    assert worker.count("[Peer]") == 1 and "PrivateKey" not in head + worker


def test_render_shows_each_host_s_configuration_with_where_each_key_comes_from(tmp_path):
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": CLUSTER.format(more="")}))
    files = render.service_files(inv, "model.gguf")
    assert {host for host, found in files.items() if "/etc/wireguard/lfwg0.conf" in found} == {"gpu", "w1", "w2"}
    assert "PublicKey = (gpu's public key, read from it on provision)" in files["w1"]["/etc/wireguard/lfwg0.conf"]
    unit = files["w1"][worker_role.UNIT_PATH]
    assert "-H 10.203.61.2 -p 50052" in unit and "IPAddressAllow=10.203.61.1 localhost" in unit
    assert "After=wg-quick@lfwg0.service" in unit


def test_firewall_rpc_on_the_tunnel_interface_from_the_head_and_wireguard_from_the_cluster(tmp_path):
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": CLUSTER.format(more="")}))
    found = rules.rulesets(cluster.fleet(inv), inv)
    [rpc, udp] = found["w1"].rules
    assert (rpc.port, rpc.sources, rpc.interface, rpc.proto) == (50052, ("10.203.61.1",), "lfwg0", "tcp")
    assert (udp.port, udp.sources, udp.proto) == (51820, ("192.168.1.10", "192.168.1.12"), "udp")
    head_udp = next(rule for rule in found["gpu"].rules if rule.proto == "udp")
    assert head_udp.sources == ("192.168.1.11", "192.168.1.12")


def test_nftables_loaded_with_the_tunnel_rule_is_what_the_role_wants():
    ruleset = rules._ruleset.Ruleset(
        (
            rules._ruleset.Rule(50052, ("10.203.61.1",), "rpc", interface="lfwg0"),
            rules._ruleset.Rule(51820, ("10.0.0.1", "10.0.0.3"), "tunnel", proto="udp"),
        )
    )
    text = nftables.render_table(ruleset)
    assert text == (RECORDED / "nft_table_with_tunnel.nft").read_text()
    loaded = firewall_facts.NftTable().process((RECORDED / "nft_table_with_tunnel.json").read_text().splitlines())
    operation = nftables.table(ruleset)
    facts = Facts({operation.facts[0].key: text.rstrip("\n"), operation.facts[1].key: loaded})
    assert isinstance(operation.plan(facts), NoChange)
    # The same rule without its interface is another rule: the loaded table would be replaced.
    plain = rules._ruleset.Ruleset((rules._ruleset.Rule(50052, ("10.203.61.1",), "rpc"), ruleset.rules[1]))
    operation = nftables.table(plain)
    facts = Facts({operation.facts[0].key: nftables.render_table(plain).rstrip("\n"), operation.facts[1].key: loaded})
    assert isinstance(operation.plan(facts), Change)


def test_ufw_admits_the_head_on_the_tunnel_interface_only():
    ruleset = rules._ruleset.Ruleset((rules._ruleset.Rule(50052, ("10.203.61.1",), "rpc", interface="lfwg0"),))
    [allow] = ufw.allow_rules(ruleset)
    assert allow[:6] == ("allow", "in", "on", "lfwg0", "from", "10.203.61.1")


def test_a_rule_s_interface_is_one_plain_name():
    with pytest.raises(Exception, match="interface"):
        rules._ruleset.Rule(50052, ("10.0.0.1",), "rpc", interface="lfwg0 accept")


def test_the_public_key_fact_takes_a_key_and_nothing_else():
    fact = wireguard.PublicKey("/etc/wireguard/lfwg0.key")
    key = json.loads((RECORDED / "public_keys.json").read_text())["w1"]
    assert fact.process([key]) == key
    assert fact.process([]) is None and fact.process(["wg: command not found"]) is None


def test_a_missing_or_loose_private_key_is_made_or_closed(tmp_path):
    operation = keys.private_key(fleet(tmp_path).links("w1"))
    missing = operation.plan(Facts({operation.facts[0].key: None}))
    assert isinstance(missing, Change) and "wg genkey" in missing.steps[0].command
    assert "umask 077" in missing.steps[0].command
    loose = operation.plan(Facts({operation.facts[0].key: FileState("file", 0o644, "root", "root", 45)}))
    assert isinstance(loose, Change) and "chmod 0600" in loose.steps[0].command
    kept = operation.plan(Facts({operation.facts[0].key: FileState("file", 0o600, "root", "root", 45)}))
    assert isinstance(kept, NoChange)


def test_handshake_ages_are_read_from_wg_show():
    from llamafleet.verify import probes

    key_a, key_b = "A" * 42 + "E=", "B" * 42 + "g="
    lines = [f"{key_a}\t1765000000", f"{key_b}\t0", "now 1765000042"]
    assert probes.Handshakes("lfwg0").process(lines) == {key_a: 42, key_b: None}
    assert "wg show lfwg0 latest-handshakes" in probes.Handshakes("lfwg0").command()
