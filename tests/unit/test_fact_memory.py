"""Facts read ahead: what a playbook's run read is remembered per host, and parsed later only while nothing changed."""

from __future__ import annotations

import json

import pytest
from inventory_tree import GOOD, write_tree

from llamafleet import factmemory, inventory
from llamafleet.facts import CommandOutput, FileContent, PathInfo
from llamafleet.session import HostSession
from llamafleet.ssh import HostConnection


@pytest.fixture
def memory(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    return factmemory.location(tmp_path / "hosts.yml", "provision")


def test_a_run_remembers_each_hosts_commands_and_keeps_the_other_hosts(memory):
    factmemory.remember(memory, {"h1": ["cat /a", "cat /b"], "w1": ["cat /c"]})
    factmemory.remember(memory, {"w1": ["cat /d"]})  # a --limit run: h1's memory stays
    assert factmemory.recall(memory) == {"h1": ["cat /a", "cat /b"], "w1": ["cat /d"]}
    assert memory.parent.stat().st_mode & 0o077 == 0, "the cache folder is its owner's only"


def test_another_playbook_or_inventory_has_a_memory_of_its_own(tmp_path, memory):
    assert factmemory.location(tmp_path / "hosts.yml", "deploy") != memory
    assert factmemory.location(tmp_path / "other.yml", "provision") != memory
    assert factmemory.location(tmp_path / "hosts.yml", "provision") == memory


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"h1": "cat /a"}', '{"h1": [1, "cat /a"]}'])
def test_a_damaged_memory_is_no_memory_and_never_an_error(memory, content):
    memory.parent.mkdir(parents=True)
    memory.write_text(content)
    recalled = factmemory.recall(memory)
    assert recalled in ({}, {"h1": ["cat /a"]})
    factmemory.remember(memory, {"h1": ["cat /x"]})
    assert factmemory.recall(memory)["h1"] == ["cat /x"]


def test_a_memory_is_bounded(memory):
    factmemory.remember(memory, {"h1": [f"cat /{n}" for n in range(factmemory.MAX_COMMANDS + 50)]})
    assert len(factmemory.recall(memory)["h1"]) == factmemory.MAX_COMMANDS
    assert len(json.loads(memory.read_text())["h1"]) == factmemory.MAX_COMMANDS


@pytest.fixture
def session(tmp_path):
    inv = inventory.load(write_tree(tmp_path / "inv", {"hosts.yml": GOOD}))
    return HostSession(HostConnection(inv.head))  # never opened: nothing here connects


def test_a_fact_whose_command_was_read_ahead_is_parsed_from_that_output(session):
    fact = FileContent("/etc/llamafleet/model.json")
    session.read({fact.command(): ["present", '{"name": "m.gguf"}'], "cat /other": ["x"]})
    assert [f.key for f in session.missing([fact, PathInfo("/etc/x")])] == [PathInfo("/etc/x").key]
    assert session.known()[fact.key] == '{"name": "m.gguf"}'
    assert list(session.asked) == [fact.command(), PathInfo("/etc/x").command()], "what the next run reads ahead"


def test_output_read_ahead_is_dropped_when_the_host_changes(session):
    fact = CommandOutput("cat /etc/hostname")
    session.read({fact.command(): ["old"]})
    session.changed()
    assert [f.key for f in session.missing([fact])] == [fact.key]


def test_output_a_fact_cannot_parse_is_read_again(session):
    fact = PathInfo("/etc/x")
    session.read({fact.command(): ["regular file|not-octal|root|root|3"]})
    assert [f.key for f in session.missing([fact])] == [fact.key]


def test_the_runs_of_one_process_share_what_was_read_on_a_connection(session):
    later = HostSession(session.connection)  # the next task of the same command line
    fact = CommandOutput("cat /etc/hostname")
    session.read({fact.command(): ["h1"]})
    assert later.missing([fact]) == [] and later.known()[fact.key] == ["h1"]


def test_each_command_line_has_a_memory_of_its_own_in_each_folder(tmp_path, memory, monkeypatch):
    line = ["provision", "-i", "hosts.yml", "deploy", "-i", "hosts.yml", "--model", "m.gguf"]
    monkeypatch.chdir(tmp_path)
    mine = factmemory.of_command_line(tmp_path / "hosts.yml", line)
    assert mine == factmemory.of_command_line(tmp_path / "hosts.yml", list(line))
    assert mine not in (memory, factmemory.of_command_line(tmp_path / "hosts.yml", line[:3]))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # -i hosts.yml names another file here
    assert factmemory.of_command_line(tmp_path / "hosts.yml", line) != mine


def test_every_fact_the_process_asked_for_on_a_host_is_kept_on_its_connection(session):
    later = HostSession(session.connection)  # the next task of the same command line
    session.missing([CommandOutput("cat /a"), PathInfo("/b")])
    later.missing([CommandOutput("cat /c"), CommandOutput("cat /a")])
    assert list(later.asked) == ["cat /c", "cat /a"]
    assert list(session.connection.asked) == ["cat /a", PathInfo("/b").command(), "cat /c"]
