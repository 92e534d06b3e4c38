"""Several clusters in one inventory: how hosts are partitioned, what is refused, and what each cluster's services
and firewall rules are; one cluster without balancers renders exactly what it did before clusters existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inventory_tree import write_tree

from llamafleet import cluster, inventory, render
from llamafleet.errors import InventoryError
from llamafleet.roles.firewall import rules
from tests.command_line import environment, error_line, invoke

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded" / "one-cluster"

TWO = """\
all:
  vars:
    llama_cpp_version: b11434
  children:
    head:
      hosts:
        a-head: {ansible_host: 10.0.1.1, cluster: a}
        b-head: {ansible_host: 10.0.2.1, cluster: b}
    workers:
      hosts:
        a-w1: {ansible_host: 10.0.1.2, cluster: a}
        a-w2: {ansible_host: 10.0.1.3, cluster: a}
        b-w1: {ansible_host: 10.0.2.2, cluster: b}
    balancers:
      hosts:
        lb1: {ansible_host: 10.0.0.9, api_allow: [192.168.0.0/16]}
"""


def load(tmp_path, text: str) -> inventory.Inventory:
    return inventory.load(write_tree(tmp_path, {"hosts.yml": text}))


def refusal(tmp_path, text: str) -> str:
    with pytest.raises(InventoryError) as caught:
        cluster.fleet(load(tmp_path, text))
    return str(caught.value)


def test_one_cluster_without_balancers_renders_what_it_did_before_clusters():
    inv = inventory.load(RECORDED / "hosts.yml")
    found = {
        "files": render.service_files(inv, "model.gguf"),
        "rules": {name: repr(ruleset) for name, ruleset in rules.rulesets(cluster.fleet(inv), inv).items()},
    }
    assert found == json.loads((RECORDED / "rendered.json").read_text())


def test_hosts_without_a_cluster_variable_are_one_cluster_named_default(tmp_path):
    inv = inventory.load(RECORDED / "hosts.yml")
    [only] = cluster.fleet(inv).clusters
    assert (only.name, only.head, [w.name for w in only.workers]) == ("default", "gpu-box", ["w1", "w2"])


def test_each_cluster_has_its_head_its_workers_and_its_own_rpc_list(tmp_path):
    fleet = cluster.fleet(load(tmp_path, TWO))
    assert [(c.name, c.head, c.rpc_servers) for c in fleet.clusters] == [
        ("a", "a-head", "10.0.1.2:50052,10.0.1.3:50052"),
        ("b", "b-head", "10.0.2.2:50052"),
    ]
    assert [fleet.of(name).name for name in ("a-head", "a-w2", "b-w1")] == ["a", "a", "b"]
    assert fleet.of("lb1") is None


def test_a_worker_admits_only_its_own_cluster_s_head(tmp_path):
    inv = load(tmp_path, TWO)
    found = rules.rulesets(cluster.fleet(inv), inv)
    assert [(r.port, r.sources) for r in found["a-w1"].rules] == [(50052, ("10.0.1.1",))]
    assert [(r.port, r.sources) for r in found["b-w1"].rules] == [(50052, ("10.0.2.1",))]


def test_with_balancers_a_head_s_api_admits_only_them_and_loopback(tmp_path):
    inv = load(tmp_path, TWO.replace("a-head: {", "a-head: {api_allow: [0.0.0.0/0], "))
    found = rules.rulesets(cluster.fleet(inv), inv)
    for head in ("a-head", "b-head"):
        [api] = found[head].rules
        assert (api.port, set(api.sources)) == (8080, {"10.0.0.9", "127.0.0.1", "::1"})


def test_the_balancer_port_admits_the_balancer_s_api_allow(tmp_path):
    inv = load(tmp_path, TWO)
    [port] = rules.rulesets(cluster.fleet(inv), inv)["lb1"].rules
    assert (port.port, set(port.sources)) == (8080, {"192.168.0.0/16", "127.0.0.1", "::1"})


def test_a_balancer_without_api_allow_admits_the_inventory_s_hosts(tmp_path):
    inv = load(tmp_path, TWO.replace(", api_allow: [192.168.0.0/16]", ""))
    [port] = rules.rulesets(cluster.fleet(inv), inv)["lb1"].rules
    assert set(port.sources) == {"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.2.1", "10.0.2.2", "10.0.0.9", "127.0.0.1",
                                 "::1"}  # fmt: skip


def test_a_balancer_reaches_a_head_at_its_api_host_else_its_cluster_address(tmp_path):
    fleet = cluster.fleet(load(tmp_path, TWO.replace("b-head: {", "b-head: {api_host: 10.5.0.1, api_port: 8081, ")))
    assert [(c.api_address, c.api_port) for c in fleet.clusters] == [("10.0.1.1", 8080), ("10.5.0.1", 8081)]


def test_seventeen_workers_over_two_clusters_load(tmp_path):
    text = TWO.replace("        b-w1: {ansible_host: 10.0.2.2, cluster: b}\n", "".join(
        f"        b-w{i}: {{ansible_host: 10.0.2.{i + 1}, cluster: b}}\n" for i in range(1, 16)
    ))  # fmt: skip
    assert sum(len(c.workers) for c in cluster.fleet(load(tmp_path, text)).clusters) == 17


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("b-head: {ansible_host: 10.0.2.1, cluster: b}", "b-head: {ansible_host: 10.0.2.1, cluster: a}"),
         "group head: must have exactly one host per cluster, found 2 (a-head, b-head) in cluster a"),
        (("b-w1: {ansible_host: 10.0.2.2, cluster: b}", "b-w1: {ansible_host: 10.0.2.2, cluster: c}"),
         "cluster c: has no head: its workers (b-w1) need a host of group head with cluster c"),
        (("a-w2: {ansible_host: 10.0.1.3, cluster: a}", "a-w2: {ansible_host: 10.0.1.3}"),
         "cluster default: has no head: its workers (a-w2) need a host of group head with cluster default"),
        (("lb1: {", "a-w1: {"), "host a-w1: is in both workers and balancers"),
        (("lb1: {", "b-head: {"), "host b-head: is in both head and balancers"),
        (("cluster: a}", "cluster: 'a b'}"), "host a-head: cluster: 'a b' is not a valid name"),
        (("cluster: b}", "cluster: [b]}"), "host b-head: cluster: must be a string"),
    ],
)  # fmt: skip
def test_partition_mistakes_are_one_line_naming_the_cluster(tmp_path, change, message):
    with pytest.raises(InventoryError, match=None) as caught:
        load(tmp_path, TWO.replace(*change, 1))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_seventeen_workers_in_one_of_two_clusters_are_refused_naming_it(tmp_path):
    text = TWO.replace("        b-w1: {ansible_host: 10.0.2.2, cluster: b}\n", "".join(
        f"        b-w{i}: {{ansible_host: 10.0.2.{i + 1}, cluster: b}}\n" for i in range(1, 18)
    ))  # fmt: skip
    with pytest.raises(InventoryError, match="cluster b: 17 hosts, but llama-server takes at most 16 RPC workers"):
        load(tmp_path, text)


def test_a_balancer_known_by_name_only_is_refused(tmp_path):
    message = refusal(tmp_path, TWO.replace("lb1: {ansible_host: 10.0.0.9", "lb1: {ansible_host: lb.example"))
    assert "host lb1: ansible_host: 'lb.example' is not a numeric IPv4 address" in message


def test_the_command_line_says_it_in_one_line_before_any_connection(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": TWO.replace("cluster: b}", "cluster: c}", 1)})  # b-head's
    error_line(invoke("provision", "-i", str(path), env=environment()), "cluster b: has no head")


def test_render_gives_each_balancer_its_haproxy_config_over_every_head(tmp_path):
    rendered = render.service_files(load(tmp_path, TWO), "model.gguf")
    config = rendered["lb1"]["/etc/haproxy/haproxy.cfg"]
    assert "server a 10.0.1.1:8080" in config and "server b 10.0.2.1:8080" in config
    assert set(rendered) == {"lb1", "a-head", "a-w1", "a-w2", "b-head", "b-w1"}
