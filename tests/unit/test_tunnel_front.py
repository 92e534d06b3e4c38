"""Balancers in front of tunnelled clusters reach the heads' APIs through WireGuard: front addresses from
balancer_tunnel_subnet, each host's peers and configuration, HAProxy's servers, the heads' and balancers' rules, and
what is refused."""

from __future__ import annotations

import pytest
from inventory_tree import write_tree

from llamafleet import cluster, inventory, render
from llamafleet.errors import InventoryError
from llamafleet.roles.balancer import role as balancer_role
from llamafleet.roles.firewall import rules
from llamafleet.roles.head import role as head_role
from llamafleet.roles.tunnel import wireguard

# c1 has the tunnel, c2 has not; two balancers in front of both.
FLEET = """\
all:
  vars:
    llama_cpp_version: b11434
    api_key_file: null
  children:
    head:
      hosts:
        h1: {{ansible_host: 192.168.1.10, cluster: c1, cluster_tunnel: wireguard}}
        h2: {{ansible_host: 192.168.1.20, cluster: c2}}
    workers:
      hosts:
        w1: {{ansible_host: 192.168.1.11, cluster: c1, cluster_tunnel: wireguard}}
        w2: {{ansible_host: 192.168.1.21, cluster: c2}}
    balancers:
      hosts:
        lb1: {{ansible_host: 192.168.1.2{lb1}}}
        lb2: {{ansible_host: 192.168.1.3}}
"""
KEYS = {name: letter * 43 + "=" for name, letter in zip(("h1", "w1", "lb1", "lb2"), "HWAB", strict=True)}


def load(tmp_path, lb1: str = "", **replace: str) -> inventory.Inventory:
    text = FLEET.format(lb1=lb1)
    for old, new in replace.items():
        text = text.replace(old, new)
    return inventory.load(write_tree(tmp_path, {"hosts.yml": text}))


def refusal(tmp_path, **replace: str) -> str:
    with pytest.raises(InventoryError) as caught:
        cluster.fleet(load(tmp_path, **replace))
    message = str(caught.value)
    assert "\n" not in message and "hosts.yml" in message
    return message


def test_tunnelled_heads_take_the_first_front_addresses_and_balancers_the_last(tmp_path):
    fleet = cluster.fleet(load(tmp_path))
    assert fleet.front == cluster.Front(
        "10.203.62.0/24", (("h1", "10.203.62.1"), ("lb1", "10.203.62.254"), ("lb2", "10.203.62.253"))
    )
    c1, c2 = fleet.clusters
    # c1's API: at the head's front address, admitting the balancers' front addresses; c2's as without the tunnel.
    assert (c1.api_address, c1.api_host_address, c1.api_allow) == (
        "10.203.62.1",
        "192.168.1.10",
        ("10.203.62.254", "10.203.62.253"),
    )
    assert (c2.api_address, c2.api_underlay, c2.api_allow) == ("192.168.1.20", "", ("192.168.1.2", "192.168.1.3"))


def test_without_a_tunnelled_cluster_or_without_balancers_there_is_no_front(tmp_path):
    plain = cluster.fleet(load(tmp_path / "a", **{", cluster_tunnel: wireguard": ""}))
    assert plain.front is None and plain.links("lb1") is None
    alone = FLEET.format(lb1="").split("    balancers:")[0]
    fleet = cluster.fleet(inventory.load(write_tree(tmp_path / "b", {"hosts.yml": alone})))
    assert fleet.front is None and fleet.clusters[0].api_address == "192.168.1.10"
    assert [p.name for p in fleet.links("h1").peers] == ["w1"]


def test_the_head_peers_with_its_workers_and_the_balancers_a_balancer_with_the_tunnelled_heads(tmp_path):
    fleet = cluster.fleet(load(tmp_path))
    head, balancer = fleet.links("h1"), fleet.links("lb1")
    assert head.addresses == ("10.203.61.1/24", "10.203.62.1/24")
    assert [(p.name, p.kind, p.address, p.endpoint, p.port) for p in head.peers] == [
        ("w1", "worker", "10.203.61.2", "192.168.1.11", 51820),
        ("lb1", "balancer", "10.203.62.254", "192.168.1.2", 51820),
        ("lb2", "balancer", "10.203.62.253", "192.168.1.3", 51820),
    ]
    assert (balancer.addresses, balancer.kind, balancer.cluster) == (("10.203.62.254/24",), "balancer", None)
    assert [(p.name, p.address, p.endpoint) for p in balancer.peers] == [("h1", "10.203.62.1", "192.168.1.10")]
    assert [p.name for p in fleet.links("w1").peers] == ["h1"]  # a worker never meets the balancers
    assert fleet.links("h2") is None and fleet.links("w2") is None


def test_the_configurations_name_the_peers_and_no_private_key(tmp_path):
    fleet = cluster.fleet(load(tmp_path))
    head = wireguard.render_config(fleet.links("h1"), "h1", KEYS)
    assert "Address = 10.203.61.1/24, 10.203.62.1/24" in head
    assert (
        f"# balancer lb1\nPublicKey = {KEYS['lb1']}\nAllowedIPs = 10.203.62.254/32\nEndpoint = 192.168.1.2:51820"
        in head
    )
    balancer = wireguard.render_config(fleet.links("lb1"), "lb1", KEYS)
    assert balancer.startswith("# Managed by llamafleet (role tunnel): balancer lb1 in front of the tunnelled heads.")
    assert "Address = 10.203.62.254/24" in balancer and balancer.count("[Peer]") == 1
    assert (
        f"# head h1\nPublicKey = {KEYS['h1']}\nAllowedIPs = 10.203.62.1/32\nEndpoint = 192.168.1.10:51820" in balancer
    )
    assert "PrivateKey" not in head + balancer


def test_a_balancer_s_own_port_is_its_endpoint_for_the_heads(tmp_path):
    fleet = cluster.fleet(load(tmp_path, lb1=", cluster_tunnel_port: 51999"))
    assert fleet.links("lb1").port == 51999
    assert "Endpoint = 192.168.1.2:51999" in wireguard.render_config(fleet.links("h1"), "h1", KEYS)


def test_haproxy_reaches_the_tunnelled_head_at_its_front_address_and_only_there(tmp_path):
    inv = load(tmp_path)
    fleet = cluster.fleet(inv)
    config = balancer_role.files(inv.hosts["lb1"], fleet, str(inv.path))[balancer_role.CONFIG]
    assert "10.203.62.1:8080" in config and "192.168.1.20:8080" in config and "192.168.1.10:8080" not in config
    dropin = render.service_files(inv, "m.gguf")["lb1"]
    assert "/etc/wireguard/lfwg0.conf" in dropin
    unit = head_role.files(inv.hosts["h1"], fleet.clusters[0], str(inv.path), behind_balancers=True)
    allow = next(line for line in unit[head_role.UNIT_PATH].splitlines() if line.startswith("IPAddressAllow="))
    assert allow == "IPAddressAllow=10.203.62.254 10.203.62.253 10.203.61.2 localhost"
    # Its requests travel the tunnel: it comes up before llama-server and goes down after it (a reboot's drain).
    assert "Wants=wg-quick@lfwg0.service\nAfter=wg-quick@lfwg0.service\n" in unit[head_role.UNIT_PATH]
    plain = head_role.files(inv.hosts["h2"], fleet.clusters[1], str(inv.path), behind_balancers=True)
    assert "wg-quick" not in plain[head_role.UNIT_PATH]


def test_firewall_the_tunnelled_head_admits_the_balancers_by_their_front_addresses_and_their_udp(tmp_path):
    inv = load(tmp_path)
    found = rules.rulesets(cluster.fleet(inv), inv)
    by_comment = {rule.comment: rule for rule in found["h1"].rules}
    assert by_comment["api"].sources == ("10.203.62.253", "10.203.62.254", "127.0.0.1", "::1")
    assert by_comment["tunnel"].sources == ("192.168.1.2", "192.168.1.3", "192.168.1.11")
    lb1 = {rule.comment: rule for rule in found["lb1"].rules}
    assert (lb1["tunnel"].port, lb1["tunnel"].proto, lb1["tunnel"].sources) == (51820, "udp", ("192.168.1.10",))
    # c2 has no tunnel: its head admits the balancers at their own addresses, and no UDP.
    h2 = {rule.comment: rule for rule in found["h2"].rules}
    assert h2["api"].sources == ("127.0.0.1", "192.168.1.2", "192.168.1.3", "::1") and "tunnel" not in h2


def subnet(value: str) -> dict[str, str]:
    """balancer_tunnel_subnet set for every host (group all)."""
    return {"api_key_file: null": f"api_key_file: null\n    balancer_tunnel_subnet: {value}"}


@pytest.mark.parametrize(
    ("replace", "who", "key", "why"),
    [
        (subnet("10.203.61.0/24"), "host lb1", "balancer_tunnel_subnet", "overlaps cluster c1's cluster_tunnel_subnet"),
        (subnet("10.203.0.0/16"), "host lb1", "balancer_tunnel_subnet", "overlaps cluster c1's cluster_tunnel_subnet"),
        (subnet("192.168.1.0/24"), "host lb1", "balancer_tunnel_subnet", "holds 192.168.1."),
        (subnet("10.1.1.0/30"), "host lb1", "balancer_tunnel_subnet", "no room for 3"),
        (subnet("'x; reboot'"), "host lb1", "balancer_tunnel_subnet", "not an IPv4 network"),
        (subnet("8.8.8.0/24"), "host lb1", "balancer_tunnel_subnet", "not a private IPv4 network"),
        ({"192.168.1.3}": "192.168.1.3, balancer_tunnel_subnet: 10.9.0.0/24}"}, "host lb2",
         "balancer_tunnel_subnet", "differs from balancer lb1's"),
        ({"192.168.1.10,": "192.168.1.10, api_host: 192.168.1.10,"}, "host h1", "api_host", "leave api_host"),
    ],
)  # fmt: skip
def test_a_front_that_cannot_work_is_one_line_naming_host_and_key(tmp_path, replace, who, key, why):
    message = refusal(tmp_path, **replace)
    assert who in message and key in message and why in message, message


def test_a_subnet_of_the_balancers_own_is_taken_by_every_host(tmp_path):
    fleet = cluster.fleet(load(tmp_path, **subnet("172.30.7.0/28")))
    assert dict(fleet.front.addresses) == {"h1": "172.30.7.1", "lb1": "172.30.7.14", "lb2": "172.30.7.13"}
