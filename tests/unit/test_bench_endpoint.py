"""bench measures through the balancers' endpoint by default, or at a head or balancer --at names."""

from __future__ import annotations

import pytest
from inventory_tree import write_tree

from llamafleet import bench, inventory
from llamafleet.errors import UsageError

TEXT = """\
all:
  vars: {api_key_file: key}
  children:
    head:
      hosts:
        a-head: {ansible_host: 127.0.0.1, cluster: a}
        b-head: {ansible_host: 127.0.0.2, cluster: b, api_port: 8081}
    balancers:
      hosts:
        lb1: {ansible_host: 127.0.0.3, balancer_port: 9000}
        lb2: {ansible_host: 127.0.0.4, balancer_host: 127.0.0.5}
"""


@pytest.fixture
def inv(tmp_path):
    (tmp_path / "key").write_text("lf-key\n")
    return inventory.load(write_tree(tmp_path, {"hosts.yml": TEXT}))


def test_the_first_balancer_s_endpoint_is_the_default(inv):
    api = bench.endpoint_api(inv)
    assert (api.base, api.headers) == ("http://127.0.0.3:9000", {"Authorization": "Bearer lf-key"})


@pytest.mark.parametrize(
    ("at", "base"),
    [("lb2", "http://127.0.0.5:8080"), ("b-head", "http://127.0.0.2:8081"), ("a-head", "http://127.0.0.1:8080")],
)
def test_at_names_a_balancer_or_a_head(inv, at, base):
    assert bench.endpoint_api(inv, at).base == base


@pytest.mark.parametrize("at", ["w1", "nobody", "-x"])
def test_at_anything_else_is_one_line_naming_the_choices(inv, at):
    with pytest.raises(UsageError, match=r"--at: .* is not a balancer or head of the inventory \(lb1, lb2, a-head"):
        bench.endpoint_api(inv, at)
