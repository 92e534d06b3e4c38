"""Each host's firewall plan from the cluster view: RPC from the head only, the API from its clients and loopback."""

from __future__ import annotations

from inventory_tree import GOOD, write_tree

from llamafleet import cluster, inventory
from llamafleet.roles.firewall import rules as RULES


def plans_for(tmp_path, text: str) -> dict:
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": text}))
    return RULES.plans(cluster.view(inv), inv)


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
