"""The role contract: every role loads as one frozen Role, hand-offs are typed, hooks run in their documented order."""

from __future__ import annotations

import ast
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from inventory_tree import HEAD_AND_WORKERS, write_tree

from llamafleet import inventory, playbooks, roles
from llamafleet.errors import InventoryError, LlamafleetError
from llamafleet.output import Output
from llamafleet.run import Handoffs
from llamafleet.runner import Phase, Runner, RunOptions

ROOT = Path(__file__).resolve().parents[2]
# Loopback on a port nothing listens on: a connection attempt fails at once, no other address is touched.
CLOSED = HEAD_AND_WORKERS.replace("{ansible_host: 10.0.0.1}", "{ansible_host: 127.0.0.1, ansible_port: 9}")


def test_every_role_module_declares_one_role_with_its_own_templates():
    names = sorted(path.parent.name for path in (ROOT / "roles").glob("*/role.py"))
    assert {"base", "llama_cpp", "firewall", "rpc_worker", "head", "model"} <= set(names)
    for name in names:
        role = roles.load(name)
        assert isinstance(role, roles.Role), name
        assert role.template_dir.is_dir(), (name, role.template_dir)
    assert roles.load("head").template_dir == ROOT / "roles/head/templates"


def test_every_playbook_holds_roles_only():
    for build in (playbooks.provision, playbooks.deploy, playbooks.rollback, playbooks.teardown):
        for phase in build():
            assert phase.roles and all(isinstance(role, roles.Role) for role in phase.roles), phase


def test_a_role_is_frozen_and_its_handlers_cannot_be_changed_after_loading():
    role = roles.load("rpc_worker")
    with pytest.raises(dataclasses.FrozenInstanceError):
        role.name = "other"
    with pytest.raises(TypeError):
        role.handlers["restart llama-rpc"] = None


def test_a_module_without_a_role_or_a_missing_role_is_refused_by_name(tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text("NAME = 'plain'\ndef operations(ctx):\n    return []\n")
    with pytest.raises(LlamafleetError, match="declares no ROLE"):
        roles.load_path(plain, "llamafleet_test_plain_role")
    for name in ("nosuchrole", "../base", "base/../head", "model/nosuchmodule"):
        with pytest.raises(LlamafleetError, match="does not exist"):
            roles.load(name)


def test_the_engine_asks_role_modules_for_nothing_by_name():
    """No getattr/hasattr in the modules that run roles: they use the Role's fields."""
    for module in ("runner.py", "run.py", "roles.py", "playbooks.py", "session.py"):
        tree = ast.parse((ROOT / "llamafleet" / module).read_text())
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        assert not {"getattr", "hasattr"} & set(calls), module


@dataclass
class Counted:
    hosts: list[str] = field(default_factory=list)


def test_a_handoff_is_made_empty_once_and_the_given_ones_are_kept():
    handoffs = Handoffs(Counted(["given"]))
    assert handoffs(Counted).hosts == ["given"]

    @dataclass
    class Fresh:
        n: int = 0

    first = handoffs(Fresh)
    first.n = 3
    assert handoffs(Fresh) is first and handoffs(Fresh).n == 3


def _runner(tmp_path, check=False) -> tuple[Runner, io.StringIO]:
    path = write_tree(tmp_path / "inv", {"hosts.yml": CLOSED})
    stream = io.StringIO()
    return Runner(inventory.load(path), RunOptions(check=check), Output(stream=stream)), stream


def test_setup_runs_only_after_every_role_validated(tmp_path):
    made = tmp_path / "made-by-setup"

    def setup(run, hosts):
        made.write_text("x")

    def refuse(run, hosts):
        raise InventoryError("refused", key="some_key")

    acting, refusing = roles.Role("acting", setup=setup), roles.Role("refusing", validate=refuse)
    runner, _ = _runner(tmp_path)
    with pytest.raises(InventoryError, match="refused"):
        runner.play([Phase("first", (acting,)), Phase("second", (refusing,))])
    assert not made.exists(), "a later role's validate failed: no role may have acted"


def test_the_head_makes_its_api_key_in_setup_never_under_check(tmp_path):
    head = roles.load("head")
    runner, stream = _runner(tmp_path, check=True)
    key = tmp_path / "inv" / "hosts.api-key"
    head.validate(runner.run, [runner.inventory.head])
    head.setup(runner.run, [runner.inventory.head])
    assert not key.exists() and "api key" not in stream.getvalue()
    runner, stream = _runner(tmp_path)
    head.validate(runner.run, [runner.inventory.head])
    assert not key.exists(), "validate changes nothing"
    head.setup(runner.run, [runner.inventory.head])
    assert key.stat().st_mode & 0o777 == 0o600 and key.read_text().startswith("lf-")
    assert f"api key: generated {key}" in stream.getvalue()
    assert "api_key_file" not in runner.inventory.head.vars or runner.inventory.head.vars["api_key_file"] is None
