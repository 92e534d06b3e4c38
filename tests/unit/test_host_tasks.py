"""The tasks that converge hosts (llamafleet.converge), over a recorded runner: what they hand over and say."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
from inventory_tree import GOOD, write_tree

from llamafleet import cluster, converge, inventory, playbooks
from llamafleet.output import OpResult, Output
from llamafleet.roles.head.role import Serving
from llamafleet.roles.model.source import Deploying
from llamafleet.roles.release.role import Switched
from llamafleet.roles.rollback.role import Only
from llamafleet.roles.teardown.role import Purge
from llamafleet.run import Handoffs
from llamafleet.runner import RunOptions


class RecordedRunner:
    """A runner whose play() ends with `code` after recording `failures`, its roles having handed over `left`."""

    def __init__(self, inv, output, code=0, left=(), failures=(), check=False) -> None:
        self.inventory, self.output, self.code = inv, output, code
        self.options = RunOptions(check=check)
        self.hosts = list(inv.hosts.values())
        self.left, self.failures = left, failures
        self.handoffs = Handoffs(*left)
        self.round_trips = {host.name: 2 for host in self.hosts}
        self.ran, self.sent = [], []
        self.run = SimpleNamespace(fleet=cluster.fleet(inv))
        self.played = False

    def given(self, given) -> RecordedRunner:
        """Made by the task's connect(given=...): the task's parameters beside what the roles will hand over."""
        self.handoffs = Handoffs(*self.left, *given)
        return self

    def exit_code(self) -> int:
        return self.code if self.played else 0

    def play(self, phases) -> int:
        self.played = True
        self.ran.append([phase.name for phase in phases])
        for failure in self.failures:
            self.output.record(failure)
        return self.code

    def healthy(self, hosts):
        return [h for h in hosts if h.name not in {f.host for f in self.failures}]

    def remote(self, host, command: str) -> SimpleNamespace:
        self.sent.append((host.name, command))
        return SimpleNamespace(stdout=f"{host.name} journal line 1\n{host.name} journal line 2\n")

    def close(self) -> None:
        pass


@pytest.fixture
def inv(tmp_path):
    return inventory.load(write_tree(tmp_path, {"hosts.yml": GOOD}))


def connector(*runners: RecordedRunner):
    made = iter(runners)
    return lambda given=(), only=None: next(made).given(given)


def names(playbook) -> list[str]:
    return [phase.name for phase in playbook()]


def printed(output: Output) -> dict:
    return json.loads(output.stream.getvalue())


HEAD_FAILED = OpResult("h1", "head", "llama-server ready", "failed", "no /health 200")


def test_a_failed_upgrade_rolls_the_switched_hosts_back(inv):
    output = Output(json_mode=True, stream=io.StringIO())
    upgrade = RecordedRunner(inv, output, code=1, left=(Switched({"w1", "h1"}),), failures=[HEAD_FAILED])
    back = RecordedRunner(inv, output)
    assert converge.provision(connector(upgrade, back)) == 1
    assert (upgrade.ran, back.ran) == ([names(playbooks.provision)], [names(playbooks.rollback)])
    assert back.handoffs(Only).hosts == {"h1", "w1"}
    doc = printed(output)
    assert doc["messages"][-2:] == [
        "\nupgrade failed (h1: head: llama-server ready: no /health 200); rolling h1, w1 back to the previous release",
        "rollback: every switched host is back on its previous release and serving",
    ]
    assert (doc["exit_code"], doc["round_trips"]) == (1, {"h1": 2, "w1": 2, "w2": 2})


@pytest.mark.parametrize("check", [True, False])
def test_no_rollback_under_check_or_when_nothing_switched(inv, check):
    output = Output(json_mode=True, stream=io.StringIO())
    switched = (Switched({"w1"}),) if check else ()
    upgrade = RecordedRunner(inv, output, code=1, left=switched, failures=[HEAD_FAILED], check=check)
    assert converge.provision(connector(upgrade)) == 1  # a second runner would stop the iterator
    assert not any("rolling" in message for message in printed(output)["messages"])


def test_a_failed_head_shows_the_end_of_each_healthy_workers_journal(inv):
    output = Output(json_mode=True, stream=io.StringIO())
    rollback = RecordedRunner(inv, output, code=1, failures=[HEAD_FAILED])
    assert converge.rollback(connector(rollback)) == 1
    assert [host for host, _ in rollback.sent] == ["w1", "w2"]
    assert all("journalctl -u llama-rpc.service -n 50" in command for _, command in rollback.sent)
    assert "w2           | w2 journal line 2" in printed(output)["messages"]


def test_deploy_hands_the_model_over_and_says_when_the_head_served_it(inv):
    output = Output(json_mode=True, stream=io.StringIO())
    runner = RecordedRunner(inv, output, left=(Serving(ready_seconds={"h1": 2.25}),))
    source = SimpleNamespace(name="tiny.gguf", sha256="0123456789abcdef" * 4)
    assert converge.deploy(connector(runner), source) == 0
    assert runner.ran == [names(playbooks.deploy)] and runner.handoffs(Deploying).model is source
    (message,) = printed(output)["messages"]
    assert message.startswith("deployed tiny.gguf (sha256 0123456789ab) in ")
    assert message.endswith(" s; h1 served it 2.2 s after its restart")


@pytest.mark.parametrize("purge", [True, False])
def test_teardown_hands_over_purge(inv, purge):
    runner = RecordedRunner(inv, Output(json_mode=True, stream=io.StringIO()))
    assert converge.teardown(connector(runner), purge) == 0
    assert runner.ran == [names(playbooks.teardown)] and runner.handoffs(Purge).purge is purge
