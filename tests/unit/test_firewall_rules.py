"""A host's firewall plan: malformed rules refused; from the cluster view, RPC from the head only, the API from its
clients and loopback."""

from __future__ import annotations

import pytest
from firewall_recordings import HEAD, P
from inventory_tree import GOOD, write_tree

from llamafleet import cluster, inventory
from llamafleet.errors import OperationError
from llamafleet.roles.firewall import rules as RULES


def plans_for(tmp_path, text: str) -> dict:
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": text}))
    return RULES.rulesets(cluster.fleet(inv), inv)


def test_workers_accept_rpc_from_the_head_only(tmp_path):
    plans = plans_for(tmp_path, GOOD)
    for worker in ("w1", "w2"):
        [rule] = plans[worker].rules
        assert (rule.port, rule.sources, rule.tag) == (50052, ("10.0.0.1",), "llamafleet rpc")


def test_the_api_accepts_the_cluster_and_loopback_by_default(tmp_path):
    [rule] = plans_for(tmp_path, GOOD)["h1"].rules
    assert rule.port == 8080
    assert set(rule.sources) == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1", "::1"}


def test_api_allow_replaces_the_cluster_but_loopback_stays(tmp_path):
    text = GOOD.replace("all:\n", "all:\n  vars:\n    api_allow: [10.9.0.0/16]\n    api_port: 8443\n", 1)
    [rule] = plans_for(tmp_path, text)["h1"].rules
    assert rule.port == 8443
    assert set(rule.sources) == {"10.9.0.0/16", "127.0.0.1", "::1"}


def test_ssh_port_is_the_host_s(tmp_path):
    plans = plans_for(
        tmp_path, GOOD.replace("{ansible_host: 10.0.0.2}", "{ansible_host: 10.0.0.2, ansible_port: 2222}")
    )
    assert plans["w1"].ssh_port == 2222 and plans["w2"].ssh_port == 22


def test_rule_sources_are_canonical_and_sorted():
    rule = P.Rule(50052, ("10.0.0.9", "10.1.0.0/16", "10.0.0.1/32", "fd00::1/128", "10.1.2.3/16"), "rpc")
    assert rule.sources == ("10.0.0.1", "10.0.0.9", "10.1.0.0/16", "fd00::1")
    assert rule.ipv4 == ("10.0.0.1", "10.0.0.9", "10.1.0.0/16") and rule.ipv6 == ("fd00::1",)
    assert rule.tag == "llamafleet rpc"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 50052, "sources": ("head.lan",), "comment": "rpc"}, "not an IP address"),
        ({"port": 50052, "sources": (), "comment": "rpc"}, "no source"),
        ({"port": 0, "sources": (HEAD,), "comment": "rpc"}, "not a port"),
        ({"port": 50052, "sources": (HEAD,), "comment": "rpc", "proto": "icmp"}, "protocol"),
        ({"port": 50052, "sources": (HEAD,), "comment": "x'; reboot"}, "comment"),
    ],
)
def test_a_rule_with_a_bad_source_port_protocol_or_comment_is_refused(kwargs, message):
    with pytest.raises(OperationError, match=message):
        P.Rule(**kwargs)


def test_a_rule_on_the_ssh_port_is_refused():
    with pytest.raises(OperationError, match="SSH port"):
        P.Ruleset((P.Rule(2222, (HEAD,), "rpc"),), ssh_port=2222)
