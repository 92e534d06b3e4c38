"""cluster.view: the head, the workers' RPC endpoints in inventory order, and who may connect to what."""

from __future__ import annotations

import dataclasses

import pytest
from inventory_tree import HEAD_AND_WORKERS, write_tree

from llamafleet import cluster, inventory
from llamafleet.errors import InventoryError

TWO_WORKERS = HEAD_AND_WORKERS + (
    "        w1: {ansible_host: 10.0.0.2}\n"  #
    "        w2: {ansible_host: 10.0.0.3}\n"
)


def view(tmp_path, hosts_yml: str, **files: str) -> cluster.Cluster:
    path = write_tree(tmp_path, {"hosts.yml": hosts_yml, **files})
    return cluster.view(inventory.load(path))


def refused(tmp_path, hosts_yml: str, **files: str) -> str:
    with pytest.raises(InventoryError) as caught:
        view(tmp_path, hosts_yml, **files)
    return str(caught.value)


def test_two_workers_are_listed_in_inventory_order(tmp_path):
    found = view(tmp_path, TWO_WORKERS)
    assert (found.head, found.head_address) == ("h1", "10.0.0.1")
    assert found.workers == (
        cluster.Worker("w1", "10.0.0.2", "10.0.0.2", 50052),
        cluster.Worker("w2", "10.0.0.3", "10.0.0.3", 50052),
    )
    assert found.rpc_servers == "10.0.0.2:50052,10.0.0.3:50052"
    assert found.warnings == ()


def test_order_is_the_inventory_s_not_the_names(tmp_path):
    hosts = (
        HEAD_AND_WORKERS
        + "        zz: {ansible_host: 10.0.0.9}\n        aa: {ansible_host: 10.0.0.8, rpc_port: 50100}\n"
    )
    found = view(tmp_path, hosts)
    assert [w.name for w in found.workers] == ["zz", "aa"]
    assert found.rpc_servers == "10.0.0.9:50052,10.0.0.8:50100"


def test_rpc_host_wins_over_ansible_host(tmp_path):
    hosts = HEAD_AND_WORKERS + "        w1: {ansible_host: 192.168.1.2, rpc_host: 10.10.0.2}\n"
    assert view(tmp_path, hosts).worker("w1") == cluster.Worker("w1", "10.10.0.2", "10.10.0.2", 50052)


def test_a_worker_named_by_dns_needs_rpc_host(tmp_path):
    message = refused(tmp_path, HEAD_AND_WORKERS + "        w1: {ansible_host: w1.lan}\n")
    assert message.startswith(f"{tmp_path / 'hosts.yml'}: host w1: rpc_host: not set, and ansible_host 'w1.lan'")
    hosts = HEAD_AND_WORKERS + "        w1: {ansible_host: w1.lan, rpc_host: 10.0.0.2}\n"
    assert view(tmp_path, hosts).worker("w1").endpoint == "10.0.0.2:50052"


@pytest.mark.parametrize("value", ["w1.lan", "::", "fd00::2", "10.0.0", "010.0.0.2"])
def test_rpc_host_must_be_numeric_ipv4(tmp_path, value):
    message = refused(tmp_path, HEAD_AND_WORKERS + f"        w1: {{ansible_host: 10.0.0.2, rpc_host: '{value}'}}\n")
    assert f"host w1: rpc_host: '{value}' is not a numeric IPv4 address" in message


def test_any_address_is_refused_unless_set_explicitly(tmp_path):
    message = refused(tmp_path, HEAD_AND_WORKERS + "        w1: {ansible_host: 0.0.0.0}\n")
    assert "host w1: rpc_host: not set, and ansible_host '0.0.0.0'" in message


def test_any_address_set_explicitly_binds_everything_with_a_warning(tmp_path):
    found = view(tmp_path, HEAD_AND_WORKERS + "        w1: {ansible_host: 10.0.0.2, rpc_host: 0.0.0.0}\n")
    assert found.worker("w1") == cluster.Worker("w1", "0.0.0.0", "10.0.0.2", 50052)
    assert found.rpc_servers == "10.0.0.2:50052"  # the head connects to a real address
    (warning,) = found.warnings
    assert warning.startswith(f"{tmp_path / 'hosts.yml'}: host w1: rpc_host: 0.0.0.0 binds every interface")


def test_any_address_needs_an_ipv4_ansible_host_to_connect_to(tmp_path):
    message = refused(tmp_path, HEAD_AND_WORKERS + "        w1: {ansible_host: w1.lan, rpc_host: 0.0.0.0}\n")
    assert "host w1: rpc_host: is 0.0.0.0, so the head would connect to ansible_host, but 'w1.lan'" in message


def test_two_workers_on_one_endpoint_are_refused(tmp_path):
    message = refused(tmp_path, TWO_WORKERS, **{"group_vars/workers.yml": "rpc_host: 10.0.0.9\n"})
    assert message == f"{tmp_path / 'hosts.yml'}: host w2: rpc_host: same RPC endpoint 10.0.0.9:50052 as host w1"


def test_same_address_on_different_ports_is_two_endpoints(tmp_path):
    hosts = HEAD_AND_WORKERS + (
        "        w1: {ansible_host: 10.0.0.2, ansible_port: 2201}\n"
        "        w2: {ansible_host: 10.0.0.2, ansible_port: 2202, rpc_port: 50053}\n"
    )
    assert view(tmp_path, hosts).rpc_servers == "10.0.0.2:50052,10.0.0.2:50053"


def test_head_address_is_its_ansible_host_or_its_rpc_host(tmp_path):
    assert view(tmp_path, TWO_WORKERS).head_address == "10.0.0.1"
    found = view(tmp_path, TWO_WORKERS, **{"host_vars/h1.yml": "rpc_host: 10.10.0.1\n"})
    assert found.head_address == "10.10.0.1"


def test_a_head_named_by_dns_needs_rpc_host(tmp_path):
    hosts = TWO_WORKERS.replace("h1: {ansible_host: 10.0.0.1}", "h1: {ansible_host: head.lan}")
    message = refused(tmp_path, hosts)
    assert message.startswith(f"{tmp_path / 'hosts.yml'}: host h1: rpc_host: not set, and ansible_host 'head.lan'")
    assert view(tmp_path, hosts, **{"host_vars/h1.yml": "rpc_host: 10.0.0.1\n"}).head_address == "10.0.0.1"


def test_rpc_host_0_0_0_0_for_everyone_leaves_the_head_at_its_ansible_host(tmp_path):
    hosts = TWO_WORKERS.replace("all:\n", "all:\n  vars: {rpc_host: 0.0.0.0}\n")
    found = view(tmp_path, hosts)
    assert found.head_address == "10.0.0.1"
    assert [(w.bind, w.address) for w in found.workers] == [("0.0.0.0", "10.0.0.2"), ("0.0.0.0", "10.0.0.3")]
    assert len(found.warnings) == 2


def test_the_head_s_rpc_host_must_be_numeric_ipv4(tmp_path):
    message = refused(tmp_path, TWO_WORKERS, **{"host_vars/h1.yml": "rpc_host: head.cluster\n"})
    assert "host h1: rpc_host: 'head.cluster' is not a usable numeric IPv4 address" in message
    hosts = TWO_WORKERS.replace("h1: {ansible_host: 10.0.0.1}", "h1: {ansible_host: head.lan}")
    message = refused(tmp_path / "b", hosts, **{"host_vars/h1.yml": "rpc_host: 0.0.0.0\n"})
    assert "host h1: rpc_host: is 0.0.0.0, and ansible_host 'head.lan' is not a usable numeric IPv4" in message


def test_api_allow_defaults_to_the_cluster_s_addresses(tmp_path):
    found = view(tmp_path, TWO_WORKERS)
    assert found.api_allow == ("10.0.0.1", "10.0.0.2", "10.0.0.3") == found.addresses


def test_api_allow_is_the_head_s_networks_normalised(tmp_path):
    allow = "api_allow: [192.168.1.0/24, 10.9.8.7, 10.1.2.3/16, 'fd00::/64', 10.9.8.7/32]\n"
    found = view(tmp_path, TWO_WORKERS, **{"host_vars/h1.yml": allow})
    assert found.api_allow == ("192.168.1.0/24", "10.9.8.7", "10.1.0.0/16", "fd00::/64")


def test_api_allow_of_a_worker_is_not_the_head_s(tmp_path):
    found = view(tmp_path, TWO_WORKERS, **{"host_vars/w1.yml": "api_allow: [192.168.0.0/16]\n"})
    assert found.api_allow == ("10.0.0.1", "10.0.0.2", "10.0.0.3")


def test_a_head_without_workers_has_no_rpc_servers_and_allows_itself(tmp_path):
    found = view(tmp_path, "all:\n  children:\n    head:\n      hosts:\n        h1: {ansible_host: 10.0.0.1}\n")
    assert (found.workers, found.rpc_servers, found.api_allow) == ((), "", ("10.0.0.1",))


def test_the_view_is_read_only(tmp_path):
    found = view(tmp_path, TWO_WORKERS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.head_address = "10.9.9.9"
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.workers[0].port = 1
    with pytest.raises(KeyError):
        found.worker("h1")
