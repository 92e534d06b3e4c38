"""Jump hosts: their users and host names are held to the rules of ansible_user and of host names, in every
spelling of ProxyJump, and a refusal is one line (exit 2) naming file, host and variable, before any connection."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from command_line import error_line, invoke_all
from hypothesis import given, settings
from hypothesis import strategies as st
from inventory_tree import WITH_W2_VAR, write_tree

from llamafleet import connvars, inventory, variables
from llamafleet.connvars import Hop
from llamafleet.errors import InventoryError

ARGS_VARS = ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")
# Every way ssh arguments name jump hosts; {} is the hop list.
SPELLINGS = ("-J {}", "-J{}", "-o ProxyJump={}", "-o 'ProxyJump {}'", "-oProxyJump={}", "-o proxyjump={}")


def w2_error(tmp_path: Path, var: str, args: str) -> InventoryError:
    path = write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % f"{var}: {json.dumps(args)}"})
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    error = caught.value
    assert (error.file, error.where, error.key) == (str(path), "host w2", var)
    assert error.exit_code == 2 and "\n" not in str(error) and str(error).isprintable(), repr(str(error))
    return error


def w2_jumps(tmp_path: Path, args: str) -> tuple[Hop, ...]:
    path = write_tree(tmp_path, {"hosts.yml": WITH_W2_VAR % f"ansible_ssh_common_args: {json.dumps(args)}"})
    return inventory.load(path).hosts["w2"].connection.jumps


@pytest.mark.parametrize("var", ARGS_VARS)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_jump_user_that_is_not_a_user_name_is_refused_in_every_spelling(tmp_path, var, spelling):
    error = w2_error(tmp_path, var, spelling.format("x$(reboot)@bastion"))
    assert f"{var}: ProxyJump: jump host 'x$(reboot)@bastion': 'x$(reboot)' is not a user name" in (str(error))


@pytest.mark.parametrize(
    ("hops", "shown"),
    [
        ("ssh://`id`@bastion:2222", "'`id`'"),
        ("ops@a.lab,x;reboot@b.lab", "'x;reboot'"),
        ("a|b@bastion", "'a|b'"),
        ("-oProxyCommand=x@bastion", "'-oProxyCommand=x'"),
        (".hidden@bastion", "'.hidden'"),
        ("%r@bastion", "'%r'"),
        ("a@b@bastion", "'a@b'"),
        ("u" * 33 + "@bastion", "'" + "u" * 33 + "'"),
        ("ünï@bastion", "'ünï'"),
    ],
)
def test_jump_users_are_held_to_the_rule_of_ansible_user(tmp_path, hops, shown):
    error = w2_error(tmp_path, "ansible_ssh_common_args", f"-J {hops}")
    assert f"{shown} is not a user name" in str(error)


@pytest.mark.parametrize(
    "hops",
    ["ops@$(id)", "ops@a/b", "ops@..", "'ops@[x y]:22'", "ops@bas%tion", "ops@bastion!", "ops@*", "ops@.lab"],
)
def test_jump_hosts_are_held_to_the_rule_of_host_names(tmp_path, hops):
    error = w2_error(tmp_path, "ansible_ssh_common_args", f"-J {hops}")
    assert "is not a valid host name" in str(error)


@pytest.mark.parametrize(
    ("args", "hops"),
    [
        ("-J ops@bastion", (Hop("bastion", 22, "ops"),)),
        ("-J Deploy.User-1@10.0.0.9:2200", (Hop("10.0.0.9", 2200, "Deploy.User-1"),)),
        ("-o ProxyJump=ssh://_svc@[fd00::1]:2222,b.lab", (Hop("fd00::1", 2222, "_svc"), Hop("b.lab"))),
        ("-J " + "u" * 32 + "@bastion", (Hop("bastion", 22, "u" * 32),)),
    ],
)
def test_good_jump_users_and_hosts_load_as_written(tmp_path, args, hops):
    assert w2_jumps(tmp_path, args) == hops


# --------------------------------------------------------------------------- properties

JUMP_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=","), max_size=40)


def login_name_ok(user: str) -> bool:
    return bool(variables.LOGIN_NAME.fullmatch(user)) and len(user) <= variables.MAX_USERNAME_LENGTH


@settings(max_examples=300, deadline=None, database=None)
@given(user=JUMP_TEXT, host=st.sampled_from(["bastion", "10.0.0.9", "[fd00::1]:2222", "b.lab:22"]))
def test_any_jump_user_is_used_only_if_it_is_a_login_name(user, host):
    values = {"ansible_host": "10.0.0.1", "ansible_ssh_common_args": f"-o ProxyJump={json.dumps(f'{user}@{host}')}"}
    try:
        settings_, _ = connvars.read("h1", values, "hosts.yml")
    except InventoryError as error:
        assert str(error).startswith("hosts.yml: host h1: ansible_ssh_common_args: ")
        assert "\n" not in str(error) and str(error).isprintable()
        return
    assert all(hop.user is None or login_name_ok(hop.user) for hop in settings_.jumps), settings_.jumps
    assert all(variables.name_problem(hop.host, "host") is None for hop in settings_.jumps), settings_.jumps


@settings(max_examples=150, deadline=None, database=None)
@given(user=st.from_regex(variables.LOGIN_NAME, fullmatch=True).filter(lambda u: len(u) <= 32))
def test_every_login_name_is_a_good_jump_user(user):
    values = {"ansible_host": "10.0.0.1", "ansible_ssh_common_args": f"-J {user}@bastion:2222"}
    assert connvars.read("h1", values, "hosts.yml")[0].jumps == (Hop("bastion", 2222, user),)


# --------------------------------------------------------------------------- the command line

# Loopback hosts at a port nothing listens on: a run that got past the checks would end unreachable (exit 3).
CLI_INVENTORY = """\
all:
  vars: {ansible_port: 1, known_hosts_file: known_hosts, llama_cpp_version: b11434}
  children:
    head: {hosts: {head: {ansible_host: 127.0.0.1}}}
    workers: {hosts: {w1: {ansible_host: 127.0.0.2}}}
"""
CLI_CASES = {
    "-J": ("ansible_ssh_common_args=-J x$(touch${{IFS}}{canary})@127.0.0.3", "'x$(touch${IFS}"),
    "ProxyJump": ("ansible_ssh_extra_args='-o ProxyJump=ops@127.0.0.3,`touch${{IFS}}{canary}`@127.0.0.4'", "'`touch"),
    "ssh://": ("ansible_ssh_args=-oProxyJump=ssh://a;touch${{IFS}}{canary}@127.0.0.3:22", "'a;touch${IFS}"),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("jump_cli")
    (folder / "hosts.yml").write_text(CLI_INVENTORY)
    canary = folder / "pwned"
    runs = {
        name: ["provision", "--check", "-i", str(folder / "hosts.yml"), "-e", extra.format(canary=canary)]
        for name, (extra, _) in CLI_CASES.items()
    }
    return canary, invoke_all(runs)


@pytest.mark.parametrize("case", CLI_CASES)
def test_the_command_line_refuses_a_bad_jump_user_with_one_line_before_any_connection(cli_runs, case):
    canary, results = cli_runs
    line = error_line(results[case], "host head", "ProxyJump", CLI_CASES[case][1], "is not a user name")
    assert re.match(r"error: \S+/hosts\.yml: host head: ansible_ssh_\w+: ProxyJump: jump host ", line), line
    assert results[case].stdout == "" and not os.path.exists(canary)
