"""The vault flags on the command line: every task that reads the inventory opens its vaults with them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.command_line import environment, error_line, invoke

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vault"


def ids(folder: Path) -> list[str]:
    return [
        *["--vault-id", f"default@{folder / 'password.txt'}"],
        *["--vault-id", f"lab@{folder / 'lab-pass.sh'}"],
        *["--vault-id", f"ops@{folder / 'ops-client.sh'}"],
    ]


@pytest.fixture
def env() -> dict[str, str]:
    return environment(ANSIBLE_VAULT_PASSWORD_FILE="", ANSIBLE_VAULT_IDENTITY_LIST="")


def test_inventory_opens_the_vaults_with_vault_ids_and_shows_them_as_vault(env):
    done = invoke("inventory", "-i", str(FIXTURES / "hosts.yml"), "--json", *ids(FIXTURES), env=env)
    assert done.returncode == 0, done.stderr
    hosts = json.loads(done.stdout)["hosts"]
    assert hosts["h1"]["vars"]["ansible_become_password"] == "(vault)"
    assert "s3cret" not in done.stdout


def test_show_vaulted_shows_what_is_not_secret(env):
    shown = invoke("inventory", "-i", str(FIXTURES / "hosts.yml"), "--json", "--show-vaulted", *ids(FIXTURES), env=env)
    hidden = invoke("inventory", "-i", str(FIXTURES / "hosts.yml"), "--json", *ids(FIXTURES), env=env)
    assert shown.returncode == 0, shown.stderr
    vars_shown, vars_hidden = (json.loads(d.stdout)["hosts"]["h1"]["vars"] for d in (shown, hidden))
    opened = [k for k in vars_shown if vars_hidden[k] == "(vault)" and vars_shown[k] != "(vault)"]
    assert opened, "no vaulted value shown"
    assert vars_shown["ansible_become_password"] == "(vault)", "a secret stays hidden"


def test_the_environment_names_the_password_file_as_in_ansible(env, tmp_path):
    folder = tmp_path / "vault"
    shutil.copytree(FIXTURES, folder)
    # Only the default id's password: the inline values of other ids cannot be opened, and the one line says so.
    env = {**env, "ANSIBLE_VAULT_PASSWORD_FILE": str(folder / "password.txt")}
    error_line(invoke("inventory", "-i", str(folder / "hosts.yml"), env=env), "cannot decrypt")


@pytest.mark.parametrize(
    "task", ["provision", "deploy", "verify", "status", "logs", "inventory", "render", "teardown", "rollback", "bench"]
)
def test_every_task_that_reads_the_inventory_refuses_a_vault_it_cannot_open(task, env, tmp_path):
    """No password given: one line naming the vaulted variable, exit 2, before any connection."""
    extra = {"deploy": ["--model", str(tmp_path / "m.gguf")], "render": ["--out", str(tmp_path / "out")]}
    done = invoke(task, "-i", str(FIXTURES / "hosts.yml"), *extra.get(task, []), env=env)
    error_line(done, "vaulted, give --vault-password-file/--vault-id/--ask-vault-pass")


def test_a_wrong_password_file_is_one_line(env, tmp_path):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the password\n")
    done = invoke("inventory", "-i", str(FIXTURES / "hosts.yml"), "--vault-password-file", str(wrong), env=env)
    error_line(done, "cannot decrypt")
