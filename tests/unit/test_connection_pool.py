"""The process's connection pool: the tasks of one command line share a host's connection only when
everything that reaches the host is the same (no SSH: connections open lazily)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafleet import connvars, variables
from llamafleet.inventory import Host
from llamafleet.ssh import ConnectionPool

BASE = {"ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "root"}


def host(name: str = "w1", **changes) -> Host:
    values = {**variables.defaults(), **BASE, **changes}  # as the inventory resolves them
    return Host(name, [], values, connvars.read(name, values)[0])


def test_the_same_host_in_a_later_task_gets_the_same_connection(tmp_path):
    pool = ConnectionPool()
    first = pool.connection(host(), accept_new_host_keys=False, base_dir=tmp_path)
    # A later task reads the inventory again: equal Host objects, not the same ones.
    again = pool.connection(host(), accept_new_host_keys=False, base_dir=tmp_path / "." / "")
    assert again is first
    first.static_facts[("OsRelease",)] = {"family": "debian"}
    assert again.static_facts == {("OsRelease",): {"family": "debian"}}, "static facts travel with the connection"


@pytest.mark.parametrize(
    "changes",
    [
        {"ansible_host": "127.0.0.2"},
        {"ansible_port": 10},
        {"ansible_user": "deploy", "ansible_become": True},
        {"ansible_ssh_private_key_file": "other.key"},
        {"ansible_ssh_common_args": "-o UserKnownHostsFile=other.known_hosts"},
        {"ansible_ssh_common_args": "-o ProxyJump=jump@127.0.0.3:2222"},
        {"ansible_password": "another"},
        {"ansible_become": True, "ansible_become_user": "llama", "ansible_user": "root"},
        {"ssh_connect_timeout": 3},
        {"ssh_command_timeout": 60},
    ],
    ids=lambda changes: ",".join(changes),
)
def test_anything_that_reaches_the_host_differently_is_another_connection(tmp_path, changes):
    pool = ConnectionPool()
    plain = pool.connection(host(), accept_new_host_keys=False, base_dir=tmp_path)
    assert pool.connection(host(**changes), accept_new_host_keys=False, base_dir=tmp_path) is not plain


def test_other_names_folders_or_host_key_policies_are_other_connections(tmp_path):
    pool = ConnectionPool()
    plain = pool.connection(host(), accept_new_host_keys=False, base_dir=tmp_path)
    others = [
        pool.connection(host("w2"), accept_new_host_keys=False, base_dir=tmp_path),
        pool.connection(host(), accept_new_host_keys=True, base_dir=tmp_path),
        pool.connection(host(), accept_new_host_keys=False, base_dir=tmp_path / "elsewhere"),
    ]
    assert all(other is not plain for other in others)
    assert len({id(o) for o in others}) == 3


def test_close_forgets_every_connection(tmp_path: Path):
    pool = ConnectionPool()
    first = pool.connection(host(), accept_new_host_keys=False, base_dir=tmp_path)
    pool.close()
    assert pool.connection(host(), accept_new_host_keys=False, base_dir=tmp_path) is not first


def test_a_changed_known_hosts_file_is_another_connection(tmp_path: Path):
    known = tmp_path / "fleet.known_hosts"
    known.write_text("127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    pool = ConnectionPool()
    vars_ = {"ansible_ssh_common_args": "-o UserKnownHostsFile=fleet.known_hosts"}
    first = pool.connection(host(**vars_), accept_new_host_keys=False, base_dir=tmp_path)
    assert pool.connection(host(**vars_), accept_new_host_keys=False, base_dir=tmp_path) is first
    again = tmp_path / "new.known_hosts"  # written beside it and renamed into place, as the lab does
    again.write_text("127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVsZWZmbGVldC10ZXN0LWtleS1zZWNvbmQtb25lAA\n")
    again.replace(known)
    assert pool.connection(host(**vars_), accept_new_host_keys=False, base_dir=tmp_path) is not first
