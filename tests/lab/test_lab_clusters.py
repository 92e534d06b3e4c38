"""Lab tier: a lab of two clusters and a balancer (`lab.up --clusters 2 --workers 1 --balancers 1`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llamafleet import lab as lab_api
from tests.lab.conftest import SESSION_LAB
from tests.lab.labtools import ssh

pytestmark = pytest.mark.lab

CLUSTER_LAB = f"{SESSION_LAB[:8]}cl"  # beside the session's lab, named after it (two checkouts never share one)
ROLES = {
    "c1-head": "head of c1",
    "c1-w1": "worker of c1",
    "c2-head": "head of c2",
    "c2-w1": "worker of c2",
    "lb1": "balancer",
}


@pytest.fixture(scope="module")
def clusters_lab():
    """2 clusters of a head and a worker, and a balancer; removed at the end of the module."""
    try:
        yield lab_api.up(CLUSTER_LAB, clusters=2, workers=1, balancers=1)
    finally:
        lab_api.down(CLUSTER_LAB)


def test_inventory_groups_hosts_by_role_and_names_each_cluster(clusters_lab):
    data = yaml.safe_load(Path(clusters_lab.inventory).read_text())
    groups = data["all"]["children"]
    assert {group: list(body["hosts"]) for group, body in groups.items()} == {
        "head": ["c1-head", "c2-head"],
        "workers": ["c1-w1", "c2-w1"],
        "balancers": ["lb1"],
    }
    found = {name: host for body in groups.values() for name, host in body["hosts"].items()}
    assert {name: host.get("cluster") for name, host in found.items()} == {
        "c1-head": "c1",
        "c1-w1": "c1",
        "c2-head": "c2",
        "c2-w1": "c2",
        "lb1": None,
    }
    assert {name: host["ansible_host"] for name, host in found.items()} == clusters_lab.addresses
    assert data["all"]["vars"]["api_allow"] == [clusters_lab.gateway]


def test_status_shows_each_host_s_role_and_cluster(clusters_lab):
    (info,) = lab_api.status(CLUSTER_LAB)
    assert {host.name: (host.role, host.running) for host in info.hosts} == {
        name: (role, True) for name, role in ROLES.items()
    }


@pytest.mark.parametrize("host", list(ROLES))
def test_each_host_answers_ssh_under_its_name(clusters_lab, host):
    proc = ssh(clusters_lab, host, "hostname && systemctl is-system-running")
    assert (proc.returncode, proc.stdout.split()) == (0, [host, "running"]), proc.stderr


def test_the_balancer_has_haproxy_and_socat_installed_and_haproxy_not_running(clusters_lab):
    installed = ssh(clusters_lab, "lb1", "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' haproxy socat")
    assert installed.stdout.splitlines() == ["haproxy installed", "socat installed"], installed.stderr
    running = ssh(clusters_lab, "lb1", "systemctl is-active haproxy; systemctl is-enabled haproxy")
    assert running.stdout.split() == ["inactive", "disabled"], running.stderr


@pytest.mark.parametrize("host", [name for name in ROLES if name != "lb1"])
def test_haproxy_is_only_on_the_balancer(clusters_lab, host):
    proc = ssh(clusters_lab, host, "command -v haproxy socat")
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stdout + proc.stderr
