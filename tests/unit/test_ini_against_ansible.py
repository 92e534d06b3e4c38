"""INI inventories read by llamafleet and by ansible-inventory from ansible-core (the reference, a test tool only):
the same hosts, the same groups with the same members, the same value for every variable both know, and the same
files refused."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ansible.config.manager import ensure_type
from command_line import invoke_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ini_inventory import FORMAT_MISTAKES, HEAD, HOST_LINE_VALUES, VARS_LINE_VALUES, assert_same

from llamafleet import inventory, inventory_listing, variables, vault, vault_secrets
from llamafleet.errors import InventoryError

ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")
ANSIBLE_VAULT = Path(sys.executable).with_name("ansible-vault")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ini"
INVENTORIES = sorted(FIXTURES.glob("*.ini")) + [FIXTURES / "named_yml.yml", FIXTURES / "no_extension" / "hosts"]
# The type of the option Ansible reads a llamafleet variable's value with, by llamafleet's type of it.
OPTION_TYPES = {"bool": "bool", "int": "int", "port": "int", "positive_int": "int"}
OPTION_TYPES |= dict.fromkeys(["str", "path", "address", "login_name", "username", "url_template"], "str")

SETTINGS = settings(
    max_examples=int(os.environ.get("LLAMAFLEET_HYPOTHESIS_EXAMPLES", "150")) // 2,  # each lists with Ansible too
    deadline=timedelta(seconds=60),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class View:
    """What both tools say about an inventory: each group's hosts (descendants' included, empty groups left out),
    each host's groups (all left out) and variables."""

    groups: dict[str, set[str]]
    host_groups: dict[str, set[str]]
    host_vars: dict[str, dict[str, Any]]


def ansible_environment(home: Path) -> dict[str, str]:
    """ansible-inventory with no configuration of the machine's or the user's, failing on a file it cannot parse."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "ansible.cfg"
    config.write_text("")
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")},
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
        "ANSIBLE_NOCOLOR": "1",
    }


def ansible_inventory(path: Path, home: Path) -> subprocess.CompletedProcess:
    """The command `ansible-inventory -i PATH --list`, run to its end."""
    argv = [str(ANSIBLE_INVENTORY), "-i", str(path.resolve()), "--list"]
    env = ansible_environment(home)
    return subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=120, check=False)


# ansible-inventory's own entry point (the ansible-inventory script calls it), run in a fork of one process that
# has imported ansible already: as fresh as a new process each time, in a tenth of the time.
FORKING_LISTER = """
import json, os, sys
from ansible.cli.inventory import InventoryCLI

for request in sys.stdin:
    path, out, err, options = json.loads(request)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        try:
            InventoryCLI.cli_executor(["ansible-inventory", "-i", path, "--list", *options])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class AnsibleLister:
    """`ansible-inventory -i PATH --list [OPTIONS]` for one path after another, each in a fork of one ansible
    process."""

    def __init__(self, home: Path) -> None:
        self.home = home
        argv = [sys.executable, "-c", FORKING_LISTER]
        env = ansible_environment(home)
        self.process = subprocess.Popen(
            argv, cwd=home, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def __call__(self, path: Path, *options: str) -> subprocess.CompletedProcess:
        out, err = self.home / "stdout", self.home / "stderr"
        self.process.stdin.write(json.dumps([str(path.resolve()), str(out), str(err), options]) + "\n")
        self.process.stdin.flush()
        code = int(self.process.stdout.readline())
        return subprocess.CompletedProcess([str(path)], code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def ansible_lister(tmp_path_factory) -> AnsibleLister:
    lister = AnsibleLister(tmp_path_factory.mktemp("ansible_home"))
    yield lister
    lister.close()


def ansible_view(result: subprocess.CompletedProcess) -> View:
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout, object_hook=without_unsafe_marker)
    host_vars = listing.pop("_meta")["hostvars"]

    def members(name: str) -> set[str]:
        body = listing.get(name, {})
        found = set(body.get("hosts", []))
        for child in body.get("children", []):
            found |= members(child)
        return found

    groups = {name: members(name) for name in listing}
    groups = {name: hosts for name, hosts in groups.items() if hosts}
    host_groups = {host: {g for g, hosts in groups.items() if host in hosts and g != "all"} for host in groups["all"]}
    return View(groups, host_groups, {host: host_vars.get(host, {}) for host in groups["all"]})


def without_unsafe_marker(mapping: dict) -> Any:
    """A string Ansible will not template (b'xy' read as text) is listed as {"__ansible_unsafe": "xy"}: its value
    is the string."""
    return mapping["__ansible_unsafe"] if list(mapping) == ["__ansible_unsafe"] else mapping


def llamafleet_view(document: dict) -> View:
    """From the document `invoke inventory --json` prints."""
    groups = {name: set(hosts) for name, hosts in document["groups"].items() if hosts}
    host_groups = {name: set(host["groups"]) for name, host in document["hosts"].items()}
    return View(groups, host_groups, {name: host["vars"] for name, host in document["hosts"].items()})


def as_llamafleet_shows(name: str, value: Any) -> Any:
    """Ansible's value of a variable as llamafleet shows it: converted as the Ansible option of its type converts
    it (a bool option reads "yes" as true), secrets hidden."""
    if name in variables.SECRET_VARS and value is not None:
        return variables.SECRET_SHOWN
    kind = variables.REFINED_TYPES.get(name) or variables.CONNECTION_VARS.get(name)
    if kind is None and name in variables.catalogue():
        kind = variables.catalogue()[name].type
    if kind in OPTION_TYPES and value is not None:
        value = json.loads(json.dumps(ensure_type(value, OPTION_TYPES[kind])))
    return value


def assert_same_view(ours: View, theirs: View) -> None:
    __tracebackhide__ = True
    assert ours.groups == theirs.groups
    assert ours.host_groups == theirs.host_groups
    for host, values in theirs.host_vars.items():
        known = {name: value for name, value in values.items() if name != "ansible_group_priority"}
        assert set(known) <= set(ours.host_vars[host]), host
        for name, value in known.items():
            assert_same(ours.host_vars[host][name], as_llamafleet_shows(name, value))


# --------------------------------------------------------------------------- the reference itself


@pytest.mark.parametrize("path", [FIXTURES / "nested.ini", FIXTURES / "named_yml.yml"], ids=lambda p: p.name)
def test_the_forked_lister_lists_what_the_ansible_inventory_command_lists(ansible_lister, tmp_path, path):
    command, forked = ansible_inventory(path, tmp_path), ansible_lister(path)
    assert (forked.returncode, forked.stdout) == (command.returncode, command.stdout) == (0, command.stdout)


def test_the_forked_lister_fails_where_the_ansible_inventory_command_fails(ansible_lister, tmp_path):
    path = tmp_path / "bad.ini"
    path.write_text("[a:children]\na\n")
    command, forked = ansible_inventory(path, tmp_path), ansible_lister(path)
    assert forked.returncode == command.returncode != 0
    assert "can't add group to itself" in forked.stderr and "can't add group to itself" in command.stderr


# --------------------------------------------------------------------------- sample inventories


def listed_by_llamafleet(path: Path, capsys) -> dict:
    """What `invoke inventory -i PATH --json` prints, from the function the task calls."""
    capsys.readouterr()
    inventory_listing.show(inventory.load(path), None, json_mode=True)
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", INVENTORIES, ids=[str(p.relative_to(FIXTURES)) for p in INVENTORIES])
def test_llamafleet_lists_each_sample_as_ansible_inventory_does(ansible_lister, capsys, path):
    assert_same_view(llamafleet_view(listed_by_llamafleet(path, capsys)), ansible_view(ansible_lister(path)))


COMMAND_SAMPLES = [FIXTURES / "llama_cluster.ini", FIXTURES / "no_extension" / "hosts", FIXTURES / "named_yml.yml"]


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """`invoke inventory -i PATH --json` on samples of each kind of name, started together."""
    return invoke_all({str(path): ["inventory", "-i", str(path), "--json"] for path in COMMAND_SAMPLES})


@pytest.mark.parametrize("path", COMMAND_SAMPLES, ids=[str(p.relative_to(FIXTURES)) for p in COMMAND_SAMPLES])
def test_invoke_inventory_json_shows_what_ansible_inventory_lists(ansible_lister, commands, path):
    result = commands[str(path)]
    assert result.returncode == 0, result.stderr
    assert_same_view(llamafleet_view(json.loads(result.stdout)), ansible_view(ansible_lister(path)))


def test_the_samples_hold_what_they_are_meant_to_show(ansible_lister):
    """Nested children, ranges, vars in every place, typed values, files in vars folders: all there to compare."""
    views = {path.relative_to(FIXTURES).as_posix(): ansible_view(ansible_lister(path)) for path in INVENTORIES}
    assert len(views["user_guide.ini"].groups["web"]) == 50
    assert views["user_guide.ini"].host_groups["host2.localhost"] == {"atlanta", "raleigh", "southeast", "usa"}
    assert views["nested.ini"].host_groups["oslo"] == {"nordics", "north", "europe", "america", "world"}
    assert views["nested.ini"].host_vars["helsinki"]["level"] == "america"  # the higher priority of two siblings
    assert views["layout.ini"].host_vars["a1"]["color"] == "blue"
    assert views["no_extension/hosts"].host_vars["w2"]["from_host_vars"] == "w2"
    assert views["llama_cluster.ini"].host_vars["w1"]["ansible_become"] == "yes"  # llamafleet: true
    assert views["llama_cluster.ini"].host_vars["w3"]["ansible_become_password"] == 123456  # llamafleet: "123456"
    assert set(views["named_yml.yml"].groups) == {"all", "head", "workers"}


def test_an_ini_inventory_vaulted_whole_is_opened_and_shows_its_values_as_vault(ansible_lister, tmp_path, capsys):
    password, path = tmp_path / "password.txt", tmp_path / "hosts"
    password.write_text("correct horse battery staple\n")
    path.write_text(HEAD + "[workers]\nw1 ansible_host=127.0.0.2 rpc_port=50053\n[workers:vars]\nctx_size=2048\n")
    encrypt = [str(ANSIBLE_VAULT), "encrypt", "--vault-password-file", str(password), str(path)]
    subprocess.run(encrypt, env=ansible_environment(tmp_path / "home"), capture_output=True, check=True)
    assert path.read_bytes().startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    secrets = vault_secrets.vault_secrets(vault_ids=[f"default@{password}"], environ={})
    ours = json.loads(json.dumps(vault.unmarked(inventory.load(path, vault_secrets=secrets).to_json())))
    assert_same_view(llamafleet_view(ours), ansible_view(ansible_lister(path, "--vault-password-file", str(password))))
    capsys.readouterr()
    inventory_listing.show(inventory.load(path, vault_secrets=secrets), None, json_mode=True)
    shown = json.loads(capsys.readouterr().out)["hosts"]["w1"]["vars"]
    assert (shown["rpc_port"], shown["ctx_size"], shown["ansible_host"]) == ("(vault)", "(vault)", "(vault)")


# --------------------------------------------------------------------------- every spelling of a value


def test_every_value_spelling_is_typed_as_ansible_types_it(ansible_lister, tmp_path):
    host_line = " ".join(f"v{n}{written[1:]}" for n, (written, _) in enumerate(HOST_LINE_VALUES))
    vars_lines = "".join(f"w{n}{written[1:]}\n" for n, (written, _) in enumerate(VARS_LINE_VALUES))
    path = tmp_path / "hosts.ini"
    path.write_text(HEAD + f"[x]\nh1 ansible_host=127.0.0.2 {host_line}\n[x:vars]\n{vars_lines}")
    listed = ansible_view(ansible_lister(path)).host_vars["h1"]
    ours = inventory.load(path).hosts["h1"].vars
    for n, (_, value) in enumerate(HOST_LINE_VALUES):
        assert_same(listed[f"v{n}"], value)
        assert_same(ours[f"v{n}"], value)
    for n, (_, value) in enumerate(VARS_LINE_VALUES):
        assert_same(listed[f"w{n}"], value)
        assert_same(ours[f"w{n}"], value)


# --------------------------------------------------------------------------- the same files refused


@pytest.mark.parametrize(("text", "message"), FORMAT_MISTAKES, ids=[m.split(": ")[-1][:40] for _, m in FORMAT_MISTAKES])
def test_ansible_inventory_refuses_each_file_llamafleet_refuses_for_its_format(ansible_lister, tmp_path, text, message):
    path = tmp_path / "hosts.ini"
    path.write_text(HEAD + text)
    with pytest.raises(InventoryError, match=re.escape(message)):
        inventory.load(path)
    result = ansible_lister(path)
    assert result.returncode != 0, result.stdout
    assert "[ERROR]" in result.stderr and "Traceback" not in result.stderr, result.stderr


# --------------------------------------------------------------------------- generated inventories

GROUPS = ["web", "db", "app_1", "edge-2", "zone", "gpu", "rack"]
HOSTS = [f"n{i}.localhost" for i in range(6)] + ["127.0.0.5", "127.0.0.6", "r[1:3].localhost", "127.0.1.[1:2]"]
HOSTS += ["x[a:b].localhost", "n[01:02].localhost"]
VALUES = [written.partition("=")[2] for written, _ in HOST_LINE_VALUES]
VARS_VALUES = VALUES + [written.partition("=")[2].strip() for written, _ in VARS_LINE_VALUES]
TYPED_VALUES = {
    "metrics": ["yes", "no", "True", "false", "1", "0", "on", "OFF"],
    "ansible_become": ["yes", "true", "False", "1", "n"],
    "ctx_size": ["8192", "'4096'", '"2048"', "1024.0"],
    "rpc_threads": ["4", "'8'"],
    "model_alias": ["llama", "4096", "1.5", "True"],
    "ansible_user": ["admin", "deploy"],
    "ansible_become_password": ["hunter2", "123456"],
}
plain_text = st.text("abcxyz0123456789 _-.:/,", max_size=10)
names = st.sampled_from(["v_a", "v_b", "label", "count", "flag"])
free_values = st.sampled_from(VALUES) | plain_text.map(shlex.quote)
typed_pairs = st.sampled_from(sorted(TYPED_VALUES)).flatmap(
    lambda k: st.sampled_from(TYPED_VALUES[k]).map(lambda v: (k, v))
)
host_pairs = st.tuples(names, free_values) | typed_pairs
vars_pairs = st.tuples(names, st.sampled_from(VARS_VALUES) | plain_text) | typed_pairs
comments = st.sampled_from(["", "", "", "  # a note", "\t# x=1"])


@st.composite
def host_lines(draw, hosts=st.sampled_from(HOSTS)) -> str:
    host = draw(hosts) + draw(st.sampled_from(["", "", ":2222", ":22"]))
    host = draw(st.sampled_from([host, host, host, "[::1]:2201", "::2", "[h9.localhost]:2202"]))
    pairs = draw(st.lists(host_pairs, max_size=3))
    return " ".join([host, *(f"{k}={v}" for k, v in pairs)]) + draw(comments)


@st.composite
def vars_lines(draw) -> str:
    key, value = draw(vars_pairs)
    return f"{key}{draw(st.sampled_from(['=', ' = ', '= ']))}{value}"


@st.composite
def ini_inventories(draw) -> str:
    """Groups with hosts, vars and children (each child after its parent in GROUPS' order: no loops), sections in
    any order, some groups' hosts split over two sections, hosts before any section, all's and ungrouped's vars."""
    groups = draw(st.lists(st.sampled_from(GROUPS), unique=True, max_size=5))
    sections = [("[head]", [f"h0.localhost{draw(st.sampled_from(['', ' ctx_size=512', ' label=head']))}"])]
    for index, group in enumerate(groups):
        lines = draw(st.lists(host_lines(), max_size=4))
        cut = draw(st.integers(0, len(lines)))
        sections.append((f"[{group}]", lines[:cut]))
        if cut < len(lines):
            sections.append((f"[{group}:hosts]", lines[cut:]))
        sections.append((f"[{group}:vars]", draw(st.lists(vars_lines(), max_size=3))))
        children = draw(st.lists(st.sampled_from(groups[index + 1 :] + ["head"]), unique=True, max_size=2))
        sections.append((f"[{group}:children]{draw(comments)}", children))
    sections.append(("[all:vars]", draw(st.lists(vars_lines(), max_size=3))))
    if draw(st.booleans()):
        sections.append(("[ungrouped:vars]", draw(st.lists(vars_lines(), max_size=2))))
    order = draw(st.permutations(sections))
    loose = draw(st.lists(host_lines(st.sampled_from(HOSTS[:4])), max_size=2))
    text = [*loose, *(line for header, lines in order for line in [header, *lines])]
    return "\n".join(draw(st.sampled_from(["", "  ", "; c\n"])) + line for line in text) + "\n"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generated")


@SETTINGS
@given(text=ini_inventories(), name=st.sampled_from(["hosts.ini", "hosts", "inventory.yml"]))
def test_a_generated_inventory_reads_as_ansible_inventory_lists_it(ansible_lister, scratch, text, name):
    path = scratch / name
    path.write_text(text)
    assert_same_view(llamafleet_view(inventory.load(path).to_json()), ansible_view(ansible_lister(path)))
