"""Inventory scripts read as ansible-core's script plugin reads them (ansible-inventory from ansible-core is the
reference, a test tool only), and every way a script goes wrong is one line and exit 2 before any connection."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from command_line import environment, error_line, invoke, invoke_all
from test_ini_against_ansible import (
    ANSIBLE_INVENTORY,
    ANSIBLE_VAULT,
    AnsibleLister,
    ansible_environment,
    ansible_view,
    assert_same_view,
    llamafleet_view,
)

from llamafleet import inventory, vault, vault_secrets
from llamafleet.errors import InventoryError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"
SCRIPTS = [FIXTURES / "cloud.sh", FIXTURES / "per_host.sh"]
PASSWORD = Path(__file__).resolve().parent.parent / "fixtures" / "vault" / "password.txt"
HEAD_LIST = '{"head": ["h1"], "_meta": {"hostvars": {"h1": {"ansible_host": "127.0.0.1"}}}}'


def script(folder: Path, name: str, body: str) -> Path:
    """An executable /bin/sh script `name` in `folder`."""
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def printing(folder: Path, name: str, document: str) -> Path:
    """A script that prints `document` for --list."""
    return script(folder, name, f"cat <<'JSON'\n{document}\nJSON")


# --------------------------------------------------------------------------- read as Ansible reads them


@pytest.fixture(scope="module")
def ansible(tmp_path_factory) -> AnsibleLister:
    """`ansible-inventory -i PATH --list`, the reference."""
    lister = AnsibleLister(tmp_path_factory.mktemp("ansible_home"))
    yield lister
    lister.close()


@pytest.fixture(scope="module")
def listed() -> dict[str, subprocess.CompletedProcess]:
    """`invoke inventory -i SCRIPT --json` for each sample script, started together."""
    return invoke_all({path.name: ["inventory", "-i", str(path), "--json"] for path in SCRIPTS})


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_invoke_inventory_json_lists_a_script_as_ansible_inventory_does(ansible, listed, path):
    result = listed[path.name]
    assert result.returncode == 0, result.stderr
    assert_same_view(llamafleet_view(json.loads(result.stdout)), ansible_view(ansible(path)))


def test_the_sample_scripts_hold_what_they_are_meant_to_show(listed):
    """Every form of the protocol is there to compare, with the values Ansible gives them."""
    cloud = json.loads(listed["cloud.sh"].stdout)
    hosts, groups = cloud["hosts"], cloud["groups"]
    assert "nowhere" not in hosts  # only _meta names it
    assert groups["ungrouped"] == ["lone"]  # w3 is listed there too, but it is a worker
    assert hosts["solo"]["vars"]["legacy"] == "a group that is its own host"
    assert hosts["w2"]["vars"]["rack"] == "a"  # rack_a's ansible_group_priority 5 beats rack_b
    assert hosts["w3"]["vars"]["rack"] == "c"  # a host's own variables beat its groups'
    assert hosts["w2"]["vars"]["template"] == "{{ not_templated }}"  # {"__ansible_unsafe": ...}
    assert (hosts["w1"]["vars"]["ratio"], hosts["gpu-box"]["vars"]["tags"]) == (0.5, {"zone": "a", "ids": [1, 2]})
    assert set(groups["gpu"]) == {"gpu-box", "w1", "w2", "w3"}
    per_host = json.loads(listed["per_host.sh"].stdout)["hosts"]
    assert per_host["w1"]["vars"]["rpc_port"] == 50060  # from --host w1
    assert per_host["w2"]["vars"]["rpc_threads"] == 4  # --host w2 printed nothing: its group's values only


def test_a_vaulted_value_in_a_script_is_opened_and_shows_as_vault(tmp_path, capsys):
    command = [str(ANSIBLE_VAULT), "encrypt_string", "--vault-password-file", str(PASSWORD), "b11434"]
    made = subprocess.run(command, env=ansible_environment(tmp_path / "home"), capture_output=True, text=True)
    ciphertext = "\n".join(line.strip() for line in made.stdout.splitlines()[1:])
    assert ciphertext.startswith("$ANSIBLE_VAULT;1.1;AES256\n"), made.stderr
    value = json.dumps({"__ansible_vault": ciphertext})
    document = HEAD_LIST.replace('"127.0.0.1"', f'"127.0.0.1", "llama_cpp_version": {value}')
    path = printing(tmp_path, "vaulted.sh", document)
    secrets = vault_secrets.vault_secrets(vault_ids=[f"default@{PASSWORD}"], environ={})
    opened = inventory.load(path, vault_secrets=secrets).hosts["h1"].vars["llama_cpp_version"]
    assert (opened, vault.holds_vaulted(opened)) == ("b11434", True)
    result = invoke("inventory", "-i", str(path), "--json", "--vault-password-file", str(PASSWORD))
    assert json.loads(result.stdout)["hosts"]["h1"]["vars"]["llama_cpp_version"] == "(vault)", result.stderr
    error_line(invoke("inventory", "-i", str(path)), str(path), "llama_cpp_version: vaulted, give")


def test_an_executable_yaml_file_without_a_first_line_to_run_it_is_read_as_yaml(ansible, tmp_path, capsys):
    """The system cannot run it: Ansible then reads it with its other plugins, and so does llamafleet."""
    path = tmp_path / "hosts.yml"
    path.write_text("head:\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ctx_size: 512}\n")
    path.chmod(0o755)
    assert_same_view(llamafleet_view(inventory.load(path).to_json()), ansible_view(ansible(path)))
    assert inventory.load(path).hosts["h1"].vars["ctx_size"] == 512


# --------------------------------------------------------------------------- what goes wrong: one line, exit 2

# (script body, what the one line says): each refused by ansible-inventory too (test below)
REFUSED = {
    "exits_1": ("echo 'cloud: 401 unauthorized' >&2; exit 1", "inventory script --list exited 1: cloud: 401"),
    "killed": ("kill -9 $$", "inventory script --list was killed by signal 9"),
    "list": ('echo \'["h1", "h2"]\'', "inventory script --list printed a list, not a JSON object of groups"),
    "not_json": ("echo 'head: [h1]'", "inventory script --list did not print JSON: Expecting value (output line 1"),
    "not_utf8": ("printf '\\377'", "inventory script --list printed bytes that are not UTF-8 (0xff at 0)"),
    "meta_list": ("echo '{\"_meta\": []}'", "inventory script: _meta must be a JSON object, not a list"),
    "hostvars_missing": ("echo '{\"_meta\": {}}'", "_meta.hostvars must be a JSON object of hosts, not null"),
    "hosts_string": ('echo \'{"head": {"hosts": "h1"}}\'', "group head: hosts must be a list of host names"),
    "group_null": ("echo '{\"head\": null}'", "group head: must be a list of hosts or an object with hosts"),
    "host_vars_list": (
        'echo \'{"head": ["h1"], "_meta": {"hostvars": {"h1": [1]}}}\'',
        "host h1: a host's variables must be a JSON object, not a list",
    ),
    "host_call_fails": (
        '[ "$1" = --list ] && echo \'{"head": ["h1"]}\' || { echo "no such host: $2" >&2; exit 3; }',
        "inventory script --host h1 exited 3: no such host: h1",
    ),
}
# Refused by llamafleet only: Ansible waits as long as it takes, and reads any name.
OURS_ONLY = {
    "hangs": ('sleep 300 & echo $! > "$0.pid"; wait', "inventory script --list did not finish within 1 s (stopped)"),
    "bad_name": ('echo \'{"head": ["h 1"]}\'', "group head: 'h 1' is not a valid host name"),
    "too_big": ("head -c 17000000 /dev/zero | tr '\\0' ' '", "inventory script --list printed more than 16 MiB"),
    "secret": (
        'echo "GET https://ops:hunter22@127.0.0.1:9/v1?sig=abc failed, token $CLOUD_TOKEN" >&2; exit 1',
        "inventory script --list exited 1: GET https://***@127.0.0.1:9/v1?*** failed, token (secret)",
    ),
}


ALL_REFUSED = {**REFUSED, **OURS_ONLY}


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """`invoke inventory -i SCRIPT` for each failing script, started together (one a provision, which must stop
    before it connects anywhere)."""
    folder = tmp_path_factory.mktemp("refused")
    runs = {name: ["inventory", "-i", str(script(folder, name, body))] for name, (body, _) in ALL_REFUSED.items()}
    runs["provision"] = ["provision", "-i", runs["exits_1"][2]]
    env = environment(LLAMAFLEET_INVENTORY_SCRIPT_TIMEOUT="1", CLOUD_TOKEN="s3cr3t-cloud-token")
    return {"folder": folder, **invoke_all(runs, env=env)}


@pytest.mark.parametrize("name", [*REFUSED, *OURS_ONLY])
def test_a_script_that_goes_wrong_is_one_line_naming_it(refused, name):
    path = refused["folder"] / name
    error_line(refused[name], f"error: {path}: ", ALL_REFUSED[name][1])


@pytest.fixture(scope="module")
def refused_by_ansible(refused) -> dict[str, subprocess.CompletedProcess]:
    """`ansible-inventory -i SCRIPT --list` with the script plugin alone: with its others, Ansible reads a script
    that failed as an INI file too, and some of these shell lines pass for INI host lines."""
    home = refused["folder"] / "ansible_home"
    env = {**ansible_environment(home), "ANSIBLE_INVENTORY_ENABLED": "script"}
    started = {
        name: subprocess.Popen(
            [str(ANSIBLE_INVENTORY), "-i", str(refused["folder"] / name), "--list"],
            cwd=home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in REFUSED
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("name", list(REFUSED))
def test_ansible_inventory_refuses_each_script_llamafleet_refuses(refused_by_ansible, name):
    result = refused_by_ansible[name]
    assert result.returncode != 0, result.stdout
    assert "Failed to parse inventory with 'script' plugin" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_a_failing_script_stops_provision_before_any_connection(refused):
    line = error_line(refused["provision"], "inventory script --list exited 1")
    assert "connect" not in line and refused["provision"].stdout == ""


def test_the_message_of_a_script_shows_no_secret(refused):
    result = refused["secret"]
    assert [secret for secret in ("s3cr3t-cloud-token", "hunter22", "sig=abc") if secret in result.stderr] == []


def test_a_script_that_hangs_is_stopped_with_what_it_started(refused):
    started = int((refused["folder"] / "hangs.pid").read_text())
    assert not Path(f"/proc/{started}").exists() or "zombie" in Path(f"/proc/{started}/status").read_text().lower()


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "100000"])
def test_a_script_time_limit_that_is_not_a_number_of_seconds_is_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("LLAMAFLEET_INVENTORY_SCRIPT_TIMEOUT", value)
    with pytest.raises(InventoryError, match="^LLAMAFLEET_INVENTORY_SCRIPT_TIMEOUT: must be a number of seconds"):
        inventory.load(printing(tmp_path, "hosts.sh", HEAD_LIST))


def test_a_script_runs_with_the_environment_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUD_REGION", "local-1")
    monkeypatch.chdir(tmp_path)
    document = '{"head": {"hosts": ["h1"], "vars": {"region": "$CLOUD_REGION", "cwd": "$(pwd)"}}}'
    values = inventory.load(script(tmp_path, "hosts.sh", f"cat <<JSON\n{document}\nJSON")).hosts["h1"].vars
    assert (values["region"], values["cwd"]) == ("local-1", os.fspath(tmp_path))
