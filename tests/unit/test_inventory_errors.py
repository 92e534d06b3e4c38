"""Every inventory mistake is one InventoryError line naming file, line, host or group and key."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
from command_line import error_line, invoke_all
from inventory_tree import GOOD, WITH_W2_VAR, write_tree

from llamafleet import inventory
from llamafleet.errors import InventoryError


def load_error(path: Path) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    error = caught.value
    assert error.exit_code == 2
    assert "\n" not in str(error), "one line"
    return error


# --------------------------------------------------------------------------- variables


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("rpc_prot: 50052", "rpc_prot: unknown variable (did you mean 'rpc_port'?)"),
        ("llama_cpp_verison: b11434", "llama_cpp_verison: unknown variable (did you mean 'llama_cpp_version'?)"),
        ("ctx_sise: 8192", "ctx_sise: unknown variable (did you mean 'ctx_size'?)"),
        ("ansible_hots: 10.0.0.3", "ansible_hots: unknown variable (did you mean 'ansible_host'?)"),
        ("llama_cpp_flash_attn: true", "llama_cpp_flash_attn: unknown llamafleet variable (see the roles' defaults"),
        ("rpc_compression: 3", "rpc_compression: unknown llamafleet variable"),
        ("api_token: x", "api_token: unknown llamafleet variable"),
        ("llamafleet_debug_level: 3", "llamafleet_debug_level: unknown llamafleet variable"),
        ('rpc_port: "abc"', "rpc_port: must be an integer, not a string"),
        ("rpc_port: 70000", "rpc_port: must be a port number 1-65535, not 70000"),
        ("rpc_port: true", "rpc_port: must be an integer, not a boolean"),
        ('metrics: "yes"', "metrics: must be true or false, not a string"),
        ('api_allow: ["not-a-cidr"]', "api_allow: 'not-a-cidr' is not an address or CIDR network"),
        ("api_allow: [10.0.0.0/8, 300.1.1.1]", "api_allow: '300.1.1.1' is not an address or CIDR network"),
        ("firewall: ufx", "firewall: must be one of auto, ufw, firewalld, nftables, none, not 'ufx'"),
        ("llama_cpp_backend: [cuda]", "llama_cpp_backend: must be a single value, not a list"),
        ("rpc_devices: CUDA0", "rpc_devices: must be a list, not a string"),
        ("ansible_port: '22'", "ansible_port: must be an integer, not a string"),
    ],
)
def test_bad_variable_names_the_file_line_host_and_key(tmp_path, line, message):
    path = write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % line})
    error = load_error(path)
    assert str(error).startswith(f"{path}:11: host w2: {message}")
    assert (error.file, error.line, error.where) == (str(path), 11, "host w2")
    assert error.key == line.split(":")[0]


@pytest.mark.parametrize(
    "line",
    ["site_label: rack-3", "rpc_port: 50052", "metrics: no", "api_allow: [10.0.0.0/8, 192.168.1.7]", "firewall: none"],
)
def test_good_variables_are_accepted(tmp_path, line):
    key, value = line.split(": ", 1)
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % line}))
    assert key in inv.hosts["w2"].vars


def test_bad_group_variable_names_the_group(tmp_path):
    text = GOOD.replace("    workers:\n", "    workers:\n      vars:\n        rpc_prot: 1\n")
    error = load_error(write_tree(tmp_path, {"hosts.yml": text}))
    assert (
        str(error)
        == f"{tmp_path / 'hosts.yml'}:8: group workers: rpc_prot: unknown variable (did you mean 'rpc_port'?)"
    )


@pytest.mark.parametrize(
    ("name", "text", "line", "where", "message"),
    [
        ("group_vars/workers.yml", "rpc_port: 1\nrpc_prot: 2\n", 2, "group workers", "rpc_prot: unknown variable"),
        ("group_vars/all/20-api.yml", "api_port: 8080\n\napi_port_x: 1\n", 3, "group all", "api_port_x: unknown"),
        ("group_vars/head/x.yaml", "metrics: 'no'\n", 1, "group head", "metrics: must be true or false"),
        ("host_vars/w1.yml", "# comment\nfirewall: ufx\n", 2, "host w1", "firewall: must be one of"),
        ("host_vars/w2/a.yml", "rpc_port: 0\n", 1, "host w2", "rpc_port: must be a port number 1-65535, not 0"),
    ],
)
def test_errors_in_vars_files_name_that_file(tmp_path, name, text, line, where, message):
    write_tree(tmp_path, {"hosts.yml": GOOD, name: text})
    error = load_error(tmp_path / "hosts.yml")
    assert str(error).startswith(f"{tmp_path / name}:{line}: {where}: {message}")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("host_vars/w1.yml", "- rpc_port\n", "host w1: must be a mapping of variables"),
        ("group_vars/workers.yml", "just a sentence\n", "group workers: must be a mapping of variables"),
        ("group_vars/workers.yml", "rpc_port: [1\n", "invalid YAML"),
    ],
)
def test_a_malformed_vars_file_is_refused_naming_that_file(tmp_path, name, text, message):
    write_tree(tmp_path, {"hosts.yml": GOOD, name: text})
    assert message in str(load_error(tmp_path / "hosts.yml"))
    assert str(load_error(tmp_path / "hosts.yml")).startswith(str(tmp_path / name))


# --------------------------------------------------------------------------- cluster rules


def test_an_inventory_without_a_head_is_refused(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": "all:\n  children:\n    workers:\n      hosts:\n        w1:\n"})
    assert str(load_error(path)) == f"{path}: group head: must have exactly one host, found 0 (none)"


def test_two_heads_are_refused_naming_both(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": "all:\n  children:\n    head:\n      hosts:\n        h1:\n        h2:\n"})
    wanted = "must have exactly one host per cluster, found 2 (h1, h2) in cluster default: give each head and its "
    assert str(load_error(path)) == f"{path}: group head: {wanted}workers their own `cluster`"


def test_head_through_a_child_group_counts(tmp_path):
    text = """\
    all:
      children:
        head:
          hosts:
            h1:
          children:
            extra:
              hosts:
                h2:
    """
    path = write_tree(tmp_path, {"hosts.yml": text})
    assert "found 2 (h1, h2)" in str(load_error(path))


def test_a_host_in_both_head_and_workers_is_refused(tmp_path):
    text = GOOD.replace("        w1: {ansible_host: 10.0.0.2}\n", "        w1: {ansible_host: 10.0.0.2}\n        h1:\n")
    path = write_tree(tmp_path, {"hosts.yml": text})
    assert str(load_error(path)) == f"{path}: host h1: is in both head and workers"


def test_two_hosts_on_one_address_and_port_are_refused(tmp_path):
    path = write_tree(tmp_path, {"hosts.yml": GOOD.replace("10.0.0.3", "10.0.0.2")})
    error = load_error(path)
    assert str(error) == f"{path}: host w2: ansible_host: same address 10.0.0.2:22 as host w1"
    assert error.key == "ansible_host"


def test_same_address_with_another_ansible_port_is_fine(tmp_path):
    text = GOOD.replace("ansible_host: 10.0.0.3", "ansible_host: 10.0.0.2\n          ansible_port: 2222")
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": text}))
    assert [(h.connection.address, h.connection.port) for h in inv.workers] == [("10.0.0.2", 22), ("10.0.0.2", 2222)]


def test_a_host_name_used_as_another_host_s_address_is_refused(tmp_path):
    text = """\
    all:
      children:
        head:
          hosts:
            h1: {ansible_host: w1}
        workers:
          hosts:
            w1:
    """
    path = write_tree(tmp_path, {"hosts.yml": text})
    assert str(load_error(path)) == f"{path}: host w1: ansible_host: same address w1:22 as host h1"


# --------------------------------------------------------------------------- structure and YAML


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("    workers:\n", "    workers:\n   bad_indent: 1\n"),
            ":7: invalid YAML: expected <block end>, but found '<block mapping start>'",
        ),
        (GOOD.replace("      hosts:\n        w1", "      hosts:\n\tw1"), ":8: invalid YAML: found character '\\t'"),
        (GOOD + "        w1:\n", ":12: invalid YAML: key 'w1' appears twice (first on line 8)"),
        (GOOD + "  vars: {}\n  vars: {}\n", ":13: invalid YAML: key 'vars' appears twice (first on line 12)"),
        (
            "all:\n  children:\n    head:\n      hosts:\n        h1:\n    workers: [w1, w2]\n",
            ":6: group workers: a group must be a mapping with hosts/vars/children",
        ),
        (
            "all:\n  children:\n    head:\n      hosts:\n        h1:\n    workers:\n      host:\n        w1:\n",
            ":7: group workers: host: unknown key in a group (expected hosts, vars or children)",
        ),
        (
            "all:\n  children:\n    head:\n      hosts:\n        h1:\n    workers:\n      hosts: [w1]\n",
            ":7: group workers: hosts must be a mapping of host names",
        ),
        (
            "all:\n  children:\n    head:\n      hosts:\n        h1: 10.0.0.1\n",
            ":5: host h1: variables must be a mapping",
        ),
        (
            "all:\n  children:\n    head:\n      hosts:\n        h1:\n      vars: [a]\n",
            ":6: group head: variables must be a mapping",
        ),
        (
            "all:\n  children:\n    head:\n      hosts:\n        h1:\n    cluster:\n      children: [head]\n",
            ":7: group cluster: children must be a mapping of groups",
        ),
        ("", ": the inventory is empty"),
        ("# only a comment\n", ": the inventory is empty"),
        ("- all\n", ": the top level must be a mapping of groups (all: ...)"),
    ],
)
def test_a_bad_structure_or_invalid_yaml_is_refused_naming_the_line(tmp_path, text, expected):
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    assert str(load_error(path)).startswith(f"{path}{expected}")


def test_a_missing_inventory_file_is_refused_saying_how_to_name_one(tmp_path):
    path = tmp_path / "nope.yml"
    error = load_error(path)
    assert str(error) == f"{path}: no such inventory file (use -i FILE or set LLAMAFLEET_INVENTORY)"


def test_a_folder_without_an_inventory_file_is_refused(tmp_path):
    assert str(load_error(tmp_path)) == f"{tmp_path}: no inventory file in this folder " + (
        "(hidden, group_vars, host_vars and ignored names are skipped)"
    )


def test_list_as_a_key_is_an_inventory_error(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    head:\n      hosts:\n        ? [h1, h2]\n")
    assert ":5: invalid YAML" in str(load_error(path))


# --------------------------------------------------------------------------- the command line
# Each `python -m invoke` costs about a second of imports, so the runs start together, once per
# module, and the tests below read their results.

CLI_RUNS = {
    "typo": ["inventory", "-i", "{typo}"],
    "example": ["inventory", "-i", "inventory/example.yml", "--json", "-l", "head", "-e", "ctx_size=1234"],
    "list": ["--list"],
    "deploy": ["deploy"],
    "verify": ["verify"],
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("cli")
    typo = folder / "hosts.yml"
    typo.write_text(WITH_W2_VAR % "rpc_prot: 1")
    results = invoke_all({name: [a.format(typo=typo) for a in args] for name, args in CLI_RUNS.items()})
    results["folder"] = folder
    return results


def test_cli_inventory_error_is_one_line_and_exit_2(cli):
    line = error_line(cli["typo"])
    path = cli["folder"] / "hosts.yml"
    assert line == f"error: {path}:11: host w2: rpc_prot: unknown variable (did you mean 'rpc_port'?)"
    assert cli["typo"].stdout == ""


def test_the_default_inventory_path_comes_from_llamafleet_inventory(monkeypatch, tmp_path):
    monkeypatch.delenv("LLAMAFLEET_INVENTORY", raising=False)
    assert inventory.default_path() == "inventory/hosts.yml"
    monkeypatch.setenv("LLAMAFLEET_INVENTORY", str(tmp_path / "absent.yml"))
    error = load_error(Path(inventory.default_path()))
    assert str(error) == f"{tmp_path / 'absent.yml'}: no such inventory file (use -i FILE or set LLAMAFLEET_INVENTORY)"


def test_cli_inventory_json_shows_the_limited_hosts_with_extra_vars_and_defaults(cli):
    result = cli["example"]
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["groups"]["head"] == ["gpu-box"]
    assert list(doc["hosts"]) == ["gpu-box"], "--limit head"
    assert doc["hosts"]["gpu-box"]["vars"]["ctx_size"] == 1234, "-e wins"
    assert doc["hosts"]["gpu-box"]["vars"]["rpc_port"] == 50052, "defaults are filled in"
    assert set(doc["hosts"]["gpu-box"]) == {"groups", "vars"}


def test_cli_list_shows_every_task_with_help(cli):
    assert cli["list"].returncode == 0
    described = dict(re.findall(r"^  (\S+)\s{2,}(\S.*)$", cli["list"].stdout, re.M))
    for name in ("provision", "deploy", "verify", "status", "inventory"):
        assert len(described.get(name, "")) > 10, f"{name} listed with help text"


def test_verify_without_an_inventory_is_one_line_exit_2(cli):
    line = error_line(cli["verify"])
    assert line == "error: inventory/hosts.yml: no such inventory file (use -i FILE or set LLAMAFLEET_INVENTORY)"
    assert cli["verify"].stdout == ""


def test_every_task_flag_has_help():
    import tasks  # the invoke collection, in-process: reading it needs no subprocess

    for original in tasks.ns.tasks.values():
        task = copy.copy(original)
        task.help = dict(original.help)  # get_arguments() pops the help texts it consumes
        arguments = task.get_arguments()
        assert arguments, task.name
        undocumented = [arg.name for arg in arguments if not (arg.help or "").strip()]
        assert undocumented == [], task.name
