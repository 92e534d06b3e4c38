"""Inventory folders and several -i: read and merged as ansible-core reads and merges them (ansible-inventory from
ansible-core is the reference, a test tool only), with group_vars/ and host_vars/ of each source; every mistake one
line and exit 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from command_line import error_line, invoke_all
from test_ini_against_ansible import AnsibleLister, ansible_view, assert_same_view, llamafleet_view

from llamafleet import inventory
from llamafleet.errors import InventoryError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"
SITE = FIXTURES / "site"
FIRST, SECOND = FIXTURES / "twice" / "first" / "hosts.yml", FIXTURES / "twice" / "second" / "hosts.ini"
# name -> the -i sources, in order
SOURCES = {
    "folder": [SITE],
    "twice": [FIRST, SECOND],
    "folder_and_file": [SITE, SECOND],
    "file_and_script": [FIRST, FIXTURES / "per_host.sh"],
}


@pytest.fixture(scope="module")
def ansible(tmp_path_factory) -> AnsibleLister:
    """`ansible-inventory -i PATH [-i PATH...] --list`, the reference."""
    lister = AnsibleLister(tmp_path_factory.mktemp("ansible_home"))
    yield lister
    lister.close()


def ansible_listing(ansible: AnsibleLister, sources: list[Path]) -> subprocess.CompletedProcess:
    return ansible(sources[0], *(option for source in sources[1:] for option in ("-i", str(source.resolve()))))


@pytest.fixture(scope="module")
def listed() -> dict[str, subprocess.CompletedProcess]:
    """`invoke inventory -i A [-i B] --json` for each set of sources, started together."""
    runs = {
        name: ["inventory", *(arg for path in paths for arg in ("-i", str(path))), "--json"]
        for name, paths in SOURCES.items()
    }
    return invoke_all(runs)


@pytest.mark.parametrize("name", list(SOURCES))
def test_invoke_inventory_json_lists_the_sources_as_ansible_inventory_does(ansible, listed, name):
    result = listed[name]
    assert result.returncode == 0, result.stderr
    assert_same_view(llamafleet_view(json.loads(result.stdout)), ansible_view(ansible_listing(ansible, SOURCES[name])))


def test_a_folder_is_read_file_by_file_in_sorted_order_a_later_value_winning(listed):
    hosts = json.loads(listed["folder"].stdout)["hosts"]
    assert set(hosts) == {"gpu-box", "w1", "w2", "w3"}  # w3 from more/04-late.yml
    assert hosts["w2"]["vars"]["rpc_port"] == 50054  # 03-gpu.sh after 02-workers.ini
    assert hosts["w1"]["vars"]["rack"] == "b"  # the script's workers vars after the INI's
    assert hosts["w1"]["vars"]["rpc_threads"] == 6  # host_vars/w1.yml of the folder
    assert hosts["w1"]["vars"]["site_note"] == "from group_vars/all.yml"  # group_vars/ beat the files' group vars
    assert "from_subfolder_group_vars" not in hosts["w3"]["vars"]  # only the -i folder's group_vars/
    assert hosts["gpu-box"]["groups"] == ["gpu", "head"]


def test_two_sources_merge_as_ansible_merges_them(listed):
    """Every source's group_vars/all, then every source's other groups, then host_vars/ likewise."""
    w1 = json.loads(listed["twice"].stdout)["hosts"]["w1"]["vars"]
    assert w1["all_twice"] == w1["group_twice"] == w1["host_vars_twice"] == w1["host_line"] == "second"
    assert w1["all_or_group"] == "first's group_vars/workers"  # a group's file beats any source's all
    assert w1["in_file"] == "second's group_vars/all"  # any group_vars/ beat the inventory files' group vars
    assert w1["ansible_host"] == "127.0.7.2"  # the second file lists w1 without an address: the first's stays


def test_the_first_file_read_is_where_relative_paths_start():
    assert inventory.load(SITE).path == SITE / "01-head.yml"
    assert inventory.load([SECOND, FIRST]).path == SECOND


def test_files_with_ignored_names_are_not_read(tmp_path):
    """The folder holds a broken file under each name Ansible skips (a hidden name, ~, .md, .txt, .orig, .cfg,
    .retry): read, any of them would stop the load."""
    skipped = {path.name for path in SITE.iterdir()} - {"01-head.yml", "02-workers.ini", "03-gpu.sh", "more"}
    assert skipped >= {".hidden.yml", "hosts.yml~", "README.md", "notes.txt", "old.ini.orig", "local.cfg"}
    for name in skipped - {"group_vars", "host_vars"}:
        (tmp_path / name).write_text((SITE / name).read_text())
        with pytest.raises(InventoryError):
            inventory.load(tmp_path / name)
    inventory.load(SITE)


def test_a_folder_that_links_back_to_itself_is_read_once(tmp_path):
    (tmp_path / "hosts.yml").write_text("head:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\n")
    (tmp_path / "again").symlink_to(tmp_path)
    assert list(inventory.load(tmp_path).hosts) == ["h1"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {},
            "{folder}: no inventory file in this folder (hidden, group_vars, host_vars and ignored names are skipped)",
        ),
        ({"notes.md": "x", "group_vars/all.yml": "a: 1\n"}, "{folder}: no inventory file in this folder"),
        ({"a.yml": "head:\n  hosts:\n    h1:\n", "b.ini": '[head]\nh2 x="1\n'}, "{folder}/b.ini:2: group head: "),
        ({"aws_ec2.yml": "plugin: amazon.aws.aws_ec2\nregions: [local]\n"}, "configures the inventory plugin"),
        ({"hosts.toml": "[head.hosts]\n"}, "{folder}/hosts.toml: TOML inventories are not read"),
    ],
    ids=["empty", "only_ignored", "a_broken_file", "plugin_config", "toml"],
)
def test_a_folder_that_is_no_inventory_is_one_error_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(InventoryError) as raised:
        inventory.load(tmp_path)
    assert message.format(folder=tmp_path) in str(raised.value)


def test_the_mistakes_of_several_sources_are_one_line_and_exit_2(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "hosts.ini").write_text("[head]\nh1 ansible_host=127.0.0.1\n[workers:children]\nworkers\n")
    runs = {
        "missing": ["inventory", "-i", str(FIRST), "-i", str(tmp_path / "nope.yml")],
        "host_list": ["inventory", "-i", "127.0.0.1,127.0.0.2"],
        "broken": ["provision", "-i", str(FIRST), "-i", str(broken)],
        "two_heads": ["inventory", "-i", str(FIRST), "-i", str(SITE)],
    }
    results = invoke_all(runs)
    error_line(results["missing"], f"{tmp_path / 'nope.yml'}: no such inventory file (use -i FILE")
    error_line(results["host_list"], "127.0.0.1,127.0.0.2: a host list (-i host1,host2) is not an inventory")
    error_line(results["broken"], f"{broken / 'hosts.ini'}:4: group workers: ", "a group cannot be its own child")
    two = "must have exactly one host per cluster, found 2 (h1, gpu-box)"
    error_line(results["two_heads"], f"{FIRST}, {SITE}: group head: {two}")


def test_a_host_ungrouped_in_one_file_and_in_a_group_in_another_is_only_that_group_s(ansible, tmp_path):
    """Ansible takes a host out of ungrouped once every source is read and it is in another group."""
    (tmp_path / "a.yml").write_text(
        "head:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\nungrouped:\n  hosts:\n    w1: {ansible_host: 127.0.0.2}\n"
    )
    (tmp_path / "b.ini").write_text("[workers]\nw1\n")
    ours = inventory.load(tmp_path)
    assert_same_view(llamafleet_view(ours.to_json()), ansible_view(ansible(tmp_path)))
    assert ours.hosts["w1"].groups == ["workers"]
