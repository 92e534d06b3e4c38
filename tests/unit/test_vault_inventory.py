"""Vaulted inventories: inline `!vault` values and files vaulted whole give the values ansible-core gives; what came
out of a vault is never shown by `invoke inventory`; a vault that cannot be opened is one line and exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from command_line import error_line, invoke
from inventory_tree import GOOD, write_tree

from llamafleet import inventory, inventory_listing, vault, vault_secrets
from llamafleet.errors import InventoryError
from llamafleet.vault import VaultSecrets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vault"
ANSIBLE = Path(sys.executable).parent / "ansible"
# What ansible-core gave for the fixtures (make.py recorded it): inventory file -> host -> variable -> value.
ANSIBLE_VALUES = json.loads((FIXTURES / "ansible_values.json").read_text())
VAULTED = {  # host -> the variables whose values come out of a vault in the fixture inventory (with -e @extra.yml)
    "h1": {"llama_cpp_version", "site_note", "ansible_become_password", "model_alias", "extra_ratio"},
    "w1": {"llama_cpp_version", "site_note", "site_tokens", "rpc_threads", "worker_note", "rpc_devices"},
    "w2": {"llama_cpp_version", "site_note", "rpc_threads", "worker_note", "rpc_devices", "ansible_port"},
}
VAULTED["w2"] |= {"ansible_become_password", "model_alias", "extra_ratio"}
VAULTED["w1"] |= {"model_alias", "extra_ratio"}


def secrets_for(folder: Path) -> VaultSecrets:
    """The fixture's three passwords, read the way the command line reads them."""
    ids = [f"default@{folder / 'password.txt'}", f"lab@{folder / 'lab-pass.sh'}", f"ops@{folder / 'ops-client.sh'}"]
    return vault_secrets.vault_secrets(vault_ids=ids, environ={})


def load(folder: Path, name: str = "hosts.yml", secrets: VaultSecrets | None = None) -> inventory.Inventory:
    secrets = secrets_for(folder) if secrets is None else secrets
    extra = inventory.parse_extra_vars([f"@{folder / 'extra.yml'}"], secrets) if name == "hosts.yml" else {}
    return inventory.load(folder / name, extra, vault_secrets=secrets)


def assert_same_as_ansible(inv: inventory.Inventory, answer: dict[str, dict]) -> None:
    """Same hosts, and every variable both know has the same value (ansible's own magic variables aside)."""
    __tracebackhide__ = True
    assert set(inv.hosts) == set(answer)
    for name, host in inv.hosts.items():
        ours = json.loads(json.dumps(vault.unmarked(host.vars)))
        both = set(ours) & set(answer[name])
        assert VAULTED.get(name, set()) & set(answer[name]) <= both
        assert {k: ours[k] for k in both} == {k: answer[name][k] for k in both}, name


@pytest.mark.parametrize("name", ["hosts.yml", "whole/hosts.yml"])
def test_vaulted_values_equal_what_ansible_core_gave_for_them(name):
    inv = load(FIXTURES, name)
    assert_same_as_ansible(inv, ANSIBLE_VALUES[name])
    for host, names in VAULTED.items() if name == "hosts.yml" else ():
        assert {k for k, v in inv.hosts[host].vars.items() if vault.holds_vaulted(v)} == names, host


@pytest.mark.skipif(not ANSIBLE.exists(), reason="ansible-core is not installed (pip install -e .[dev])")
def test_vaults_made_now_by_ansible_vault_give_what_ansible_core_gives_now(tmp_path):
    """The fixtures made again (new salts) with the installed ansible-core, which is asked again for the values."""
    maker = [sys.executable, str(FIXTURES / "make.py"), str(tmp_path)]
    subprocess.run(maker, capture_output=True, text=True, timeout=300, check=True)
    answers = json.loads((tmp_path / "ansible_values.json").read_text())
    assert (tmp_path / "hosts.yml").read_text() != (FIXTURES / "hosts.yml").read_text()  # other vaults
    for name in ("hosts.yml", "whole/hosts.yml"):
        assert_same_as_ansible(load(tmp_path, name), answers[name])


def test_a_vaulted_become_password_reaches_the_connection_settings():
    inv = load(FIXTURES)
    assert inv.hosts["h1"].connection.become_password == "s3cret with trailing space "
    assert inv.hosts["w2"].connection.become_password == "w2: p@ss"
    assert inv.hosts["w2"].connection.port == 2202


# --------------------------------------------------------------------------- invoke inventory


def listing(capsys, inv: inventory.Inventory, json_mode: bool, show_vaulted: bool = False) -> str:
    inventory_listing.show(inv, None, json_mode, show_vaulted)
    return capsys.readouterr().out


def plaintexts() -> list[str]:
    """Every string (and number) the fixture's vaults hold, as it could be printed."""
    found = []
    for host in load(FIXTURES).hosts.values():
        for value in host.vars.values():
            found += [str(v) for v in _leaves(value) if isinstance(v, vault.Vaulted)]
    return sorted(set(found) - {"4"}, key=len)  # "4" (rpc_threads) is in other values too; checked as (vault)


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_invoke_inventory_shows_every_vaulted_value_as_vault_and_none_of_their_plaintext(capsys, json_mode):
    out = listing(capsys, load(FIXTURES), json_mode)
    for text in plaintexts():
        for shown in (text, json.dumps(text)[1:-1], repr(text)[1:-1]):
            assert shown not in out, f"{text!r} printed"
    if json_mode:
        hosts = json.loads(out)["hosts"]
        for name, names in VAULTED.items():
            for key in names - {"site_tokens", "rpc_devices"}:
                assert hosts[name]["vars"][key] == "(vault)", (name, key)
        assert hosts["w1"]["vars"]["site_tokens"] == ["(vault)", "plain"]  # the vault inside a list, the rest as is
        assert hosts["w1"]["vars"]["rpc_devices"] == ["(vault)"]  # a list from a vaulted file: each item
        assert hosts["h1"]["vars"]["ansible_host"] == "127.0.0.1"
    else:
        assert "    ansible_become_password: (vault)\n" in out and "    rpc_threads: (vault)\n" in out


def test_asked_to_show_vaulted_values_the_listing_shows_them_but_never_a_secret(capsys):
    hosts = json.loads(listing(capsys, load(FIXTURES), True, show_vaulted=True))["hosts"]
    assert hosts["w1"]["vars"]["site_note"] == "two lines\nünïcode: ✓\n"
    assert hosts["w1"]["vars"]["site_tokens"] == ["exactly 16 bytes", "plain"]
    assert hosts["w2"]["vars"]["rpc_threads"] == 4
    assert hosts["h1"]["vars"]["ansible_become_password"] == "(vault)"
    assert hosts["w2"]["vars"]["ansible_become_password"] == "(vault)"


def test_without_vaults_the_listing_is_unchanged(tmp_path, capsys):
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": GOOD}))
    assert listing(capsys, inv, True) == listing(capsys, inv, True, show_vaulted=True)
    assert "(vault)" not in listing(capsys, inv, False)


# --------------------------------------------------------------------------- vaults that cannot be opened


def copy_fixtures(tmp_path: Path) -> Path:
    folder = tmp_path / "inv"
    shutil.copytree(FIXTURES, folder)
    return folder


def refused(folder: Path, name: str = "hosts.yml", secrets: VaultSecrets | None = None) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        load(folder, name, secrets)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    return caught.value


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def test_a_wrong_password_names_the_file_and_for_an_inline_value_the_line_and_the_variable(tmp_path):
    wrong = VaultSecrets((("default", b"wrong"), ("lab", b"wrong"), ("ops", b"wrong")))
    error = refused(FIXTURES, secrets=wrong)  # -e @extra.yml, vaulted whole, is read first
    assert str(error).startswith(f"{FIXTURES / 'extra.yml'}: cannot decrypt: none of the 3 vault password(s) given")
    folder = copy_fixtures(tmp_path)
    (folder / "extra.yml").write_text("model_alias: plain\n")
    error = refused(folder, secrets=VaultSecrets((("default", b"correct horse battery staple"),)))
    line = line_of(folder / "hosts.yml", "site_note: !vault")  # the first vault of id lab
    assert str(error).startswith(f"{folder / 'hosts.yml'}:{line}: site_note: cannot decrypt: none of the 1 vault")
    assert str(error).endswith("opens this vault (vault id lab): a wrong password, or the vault was altered")


def test_a_cut_inline_vault_names_the_file_the_line_and_the_variable(tmp_path):
    folder = copy_fixtures(tmp_path)
    text = (folder / "hosts.yml").read_text()
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if "ansible_become_password: !vault" in line)
    del lines[start + 5]  # the vault's last line of hex
    (folder / "hosts.yml").write_text("".join(lines))
    error = refused(folder)
    assert str(error).startswith(f"{folder / 'hosts.yml'}:{start + 1}: ansible_become_password: damaged vault: ")


def test_a_cut_vaulted_file_names_the_file(tmp_path):
    folder = copy_fixtures(tmp_path)
    data = (folder / "host_vars/w2.yml").read_bytes()
    (folder / "host_vars/w2.yml").write_bytes(data[: len(data) // 2])
    error = refused(folder)
    assert str(error).startswith(f"{folder / 'host_vars/w2.yml'}: damaged vault: ")


def test_a_vault_tag_on_something_else_than_a_vault_is_one_line(tmp_path):
    for value, message in (("!vault [a, b]", "!vault must tag a string"), ("!vault plain", "must start with")):
        path = write_tree(tmp_path, {"hosts.yml": GOOD.replace("rpc_port: 50052", f"site_note: {value}")})
        with pytest.raises(InventoryError, match=message) as caught:
            inventory.load(path, vault_secrets=secrets_for(FIXTURES))
        assert caught.value.line == 11


def test_the_command_line_without_a_password_names_the_first_vault_and_the_flags_that_give_one(command_env, tmp_path):
    folder = copy_fixtures(tmp_path)
    env = {k: v for k, v in command_env.items() if not k.startswith("ANSIBLE_")}
    result = invoke("inventory", "-i", str(folder / "hosts.yml"), env=env)
    line = line_of(folder / "hosts.yml", "llama_cpp_version: !vault")
    line = error_line(result, f"{folder / 'hosts.yml'}:{line}: llama_cpp_version: vaulted, give --vault-password-file/")
    assert line.endswith("--vault-id/--ask-vault-pass")
    (folder / "hosts.yml").write_text(GOOD.replace("10.0.0.", "127.0.0."))  # plain; group_vars/workers.yml vaulted
    result = invoke("inventory", "-i", str(folder / "hosts.yml"), env=env)
    error_line(result, f"error: {folder / 'group_vars/workers.yml'}: vaulted, give --vault-password-file/")
