"""What the sshd tests share: connections to the test sshd, closed after each test, and sudo login users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sshd_server
from model_transfer import places

from llamafleet import inventory
from llamafleet.ssh import HostConnection


@pytest.fixture
def connect() -> Iterator[Callable[..., HostConnection]]:
    """Opens a connection to the head of an inventory file (keyword arguments go to HostConnection); every
    connection opened is closed after the test."""
    opened: list[HostConnection] = []

    def open_head(path: Path, **kwargs) -> HostConnection:
        connection = HostConnection(inventory.load(path).head, **kwargs)
        opened.append(connection)
        return connection

    yield open_head
    for connection in opened:
        connection.close()


@pytest.fixture
def conn(sshd, tmp_path, connect) -> HostConnection:
    """A connection as root to the test sshd's host `local` (127.0.0.1), closed after the test."""
    return connect(sshd.write_inventory(tmp_path / "hosts.yml"))


@pytest.fixture
def where(tmp_path) -> dict[str, Path]:
    """The model to send, as a controller file, and where it goes on the host (see model_transfer.places)."""
    return places(tmp_path)


# One sudo rule without a password, one with (test_become.py logs in as the second).
SUDO_USERS = {"lfnopasswd": True, "lfpasswd": False}


@pytest.fixture(scope="session")
def sudo_users(sshd):
    """name -> password of each user in SUDO_USERS; users and their sudoers files are removed afterwards."""
    made: dict[str, str] = {}
    try:
        for name, nopasswd in SUDO_USERS.items():
            made[name] = sshd_server.add_sudo_user(name, sshd.key.with_suffix(".pub"), nopasswd=nopasswd)
        yield made
    finally:
        for name in SUDO_USERS:
            sshd_server.remove_user(name)


@pytest.fixture(params=list(SUDO_USERS))
def become_inventory(request, sshd, sudo_users, tmp_path) -> Path:
    """An inventory logging in as a sudo user with ansible_become and its password (also for NOPASSWD)."""
    name = request.param
    return sshd.write_inventory(
        tmp_path / "hosts.yml", ansible_user=name, ansible_become=True, ansible_become_password=sudo_users[name]
    )
