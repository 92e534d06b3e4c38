"""ansible_become: commands and uploads run as root through sudo; the password travels on stdin only."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from llamafleet import inventory
from llamafleet.errors import CommandError
from llamafleet.ssh import HostConnection

USER = "lfbecome"


@pytest.fixture(scope="module")
def sudo_user(sshd):
    """A login user who may sudo with a password (sudo installed when missing); removed afterwards."""
    if not shutil.which("sudo"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "sudo"], check=True, env=env, stdout=subprocess.DEVNULL)
    password = secrets.token_urlsafe(12)
    subprocess.run(["userdel", "--remove", USER], check=False, stderr=subprocess.DEVNULL)  # left by a killed run
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True)
    ssh_dir = Path(f"/home/{USER}/.ssh")
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(sshd.key.with_suffix(".pub"), ssh_dir / "authorized_keys")
    shutil.chown(ssh_dir, USER, USER)
    shutil.chown(ssh_dir / "authorized_keys", USER, USER)
    sudoers = Path(f"/etc/sudoers.d/{USER}")
    sudoers.write_text(f"{USER} ALL=(ALL) ALL\n")
    sudoers.chmod(0o440)
    try:
        yield password
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", USER], check=False, stderr=subprocess.DEVNULL)


def connection(sshd, tmp_path, password: str) -> HostConnection:
    text = sshd.inventory_text().replace("ansible_user: root", f"ansible_user: {USER}")
    text = text.replace("  vars:\n", f"  vars:\n    ansible_become: true\n    ansible_become_password: '{password}'\n")
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return HostConnection(inventory.load(path).head)


def test_commands_and_uploads_run_as_root(sshd, sudo_user, tmp_path):
    conn = connection(sshd, tmp_path, sudo_user)
    assert conn.check("id -u").stdout.strip() == "0"
    assert conn.check("echo a | tr a b").stdout.strip() == "b", "a whole pipeline runs under sudo"
    target = tmp_path / "owned-by-root.txt"
    conn.put(b"payload\n", str(target), mode="0600")
    assert target.read_bytes() == b"payload\n"
    assert (target.stat().st_uid, oct(target.stat().st_mode & 0o777)) == (0, "0o600")


def test_password_is_never_on_a_command_line(sshd, sudo_user, tmp_path):
    conn = connection(sshd, tmp_path, sudo_user)
    listing = conn.check("ps -eo args").stdout
    assert sudo_user not in listing
    assert "sudo" in listing, "the listing was taken under sudo"


def test_wrong_password_fails_clearly(sshd, sudo_user, tmp_path):
    conn = connection(sshd, tmp_path, "not-the-password")
    with pytest.raises(CommandError) as failure:
        conn.check("true")
    assert "not-the-password" not in str(failure.value)
