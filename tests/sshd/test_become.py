"""ansible_become: commands and uploads run as root through sudo; the password travels on stdin only."""

from __future__ import annotations

import pytest

from llamafleet.errors import CommandError

USER = "lfpasswd"  # sudo asks this user for the password (conftest.SUDO_USERS)


@pytest.fixture
def become(sshd, sudo_users, tmp_path, connect):
    """become(password) -> a connection as USER who becomes root with sudo and that password."""

    def connection(password: str):
        path = sshd.write_inventory(
            tmp_path / "hosts.yml", ansible_user=USER, ansible_become=True, ansible_become_password=password
        )
        return connect(path)

    return connection


def test_commands_and_uploads_run_as_root(become, sudo_users, tmp_path):
    conn = become(sudo_users[USER])
    assert conn.check("id -u").stdout.strip() == "0"
    assert conn.check("echo a | tr a b").stdout.strip() == "b", "a whole pipeline runs under sudo"
    target = tmp_path / "owned-by-root.txt"
    conn.put(b"payload\n", str(target), mode="0600")
    assert target.read_bytes() == b"payload\n"
    assert (target.stat().st_uid, oct(target.stat().st_mode & 0o777)) == (0, "0o600")


def test_password_is_never_on_a_command_line(become, sudo_users):
    listing = become(sudo_users[USER]).check("ps -eo args").stdout
    assert sudo_users[USER] not in listing
    assert "sudo" in listing, "the listing was taken under sudo"


def test_a_wrong_password_fails_without_showing_it(become):
    with pytest.raises(CommandError) as failure:
        become("not-the-password").check("true")
    assert "not-the-password" not in str(failure.value)
