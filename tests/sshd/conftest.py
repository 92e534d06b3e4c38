"""Login users who become root with sudo, for the sshd tests of ansible_become."""

from __future__ import annotations

from pathlib import Path

import pytest
import sshd_server

# Distinct from test_become.py's user: one sudo rule without a password, one with.
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
