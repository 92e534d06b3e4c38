"""The runner's bookkeeping without SSH: output and recap, check mode, phases, limits, exit codes."""

from __future__ import annotations

import io
import json
import threading

import pytest
from inventory_tree import HEAD_AND_WORKERS
from recordings import recorded_lines

from llamafleet import facts, inventory
from llamafleet.errors import ConnectError, OperationError
from llamafleet.operations import Facts, Operation, files
from llamafleet.output import COUNTED, OpResult, Output
from llamafleet.runner import Phase, Runner, RunOptions

HOSTS = (
    HEAD_AND_WORKERS
    + """\
        w[1:3]:
"""
)


@pytest.fixture
def inv(tmp_path) -> inventory.Inventory:
    path = tmp_path / "hosts.yml"
    path.write_text(HOSTS)
    return inventory.load(path)


def make_runner(inv, **options) -> tuple[Runner, Output, io.StringIO]:
    stream = io.StringIO()
    output = Output(json_mode=options.pop("json_mode", True), check=options.get("check", False), stream=stream)
    return Runner(inv, RunOptions(**options), output), output, stream


def recorded_file_state() -> facts.FileState:
    """The state of a recorded app.conf: "name=w1\\nport=50052\\n", 0640 root:root."""
    return facts.PathInfo("/x").process(recorded_lines("pathinfo_file.txt"))


def facts_for(operation: Operation, *values) -> Facts:
    return Facts({f.key: v for f, v in zip(operation.facts, values)})


# --------------------------------------------------------------------------- Output


def test_recap_counts_per_host():
    output = Output(json_mode=True, stream=io.StringIO())
    output.add_host("w1")
    output.add_host("w2")
    for status in ("ok", "ok", "changed", "failed"):
        output.record(OpResult("w1", "base", "op", status))
    output.record(OpResult("w3", "base", "connect", "unreachable"))
    output.finish(1)
    doc = json.loads(output.stream.getvalue())
    assert doc["recap"] == {
        "w1": {"ok": 2, "changed": 1, "failed": 1, "unreachable": 0, "skipped": 0},
        "w2": dict.fromkeys(COUNTED, 0),
        "w3": {"ok": 0, "changed": 0, "failed": 0, "unreachable": 1, "skipped": 0},
    }


def test_the_json_document_holds_recap_results_messages_check_and_exit_code():
    output = Output(json_mode=True, check=True, stream=io.StringIO())
    output.record(OpResult("w1", "base", "directory /opt", "changed", "missing", ["install -d /opt"]))
    output.say("a message")
    output.finish(0, {"round_trips": {"w1": 2}})
    doc = json.loads(output.stream.getvalue())
    assert set(doc) == {"recap", "results", "messages", "check", "exit_code", "round_trips"}
    assert (doc["check"], doc["exit_code"], doc["messages"]) == (True, 0, ["a message"])
    assert doc["results"] == [
        {
            "host": "w1",
            "role": "base",
            "operation": "directory /opt",
            "status": "changed",
            "reason": "missing",
            "steps": ["install -d /opt"],
            "diff": None,
            "error": None,
        }
    ]


def test_text_output_says_would_change_in_check_mode():
    stream = io.StringIO()
    output = Output(check=True, stream=stream)
    output.record(OpResult("w1", "base", "directory /opt", "changed", "missing"))
    output.record(OpResult("w1", "base", "user llama", "ok", "exists"))
    output.finish(0)
    lines = stream.getvalue().splitlines()
    assert lines[0].split() == ["would", "change", "w1", "base:", "directory", "/opt", "(missing)"]
    assert lines[1].split()[0] == "ok"
    assert lines[-1].split() == ["w1", "ok=1", "changed=1", "failed=0", "unreachable=0"]


def test_json_mode_prints_nothing_but_the_document():
    output = Output(json_mode=True, stream=io.StringIO())
    output.record(OpResult("w1", "base", "op", "ok"))
    output.say("hidden until the end")
    assert output.stream.getvalue() == ""


# --------------------------------------------------------------------------- Runner, check mode, no connection


def test_limit_selects_the_runner_hosts(inv):
    runner, output, _ = make_runner(inv, limit="w2,head")
    assert [h.name for h in runner.hosts] == ["h1", "w2"]
    assert set(output.recap) == {"h1", "w2"}
    assert [h.name for h in runner.phase_hosts(Phase("rpc", ("x",), group="workers"))] == ["w2"]
    assert [h.name for h in runner.phase_hosts(Phase("all", ("x",)))] == ["h1", "w2"]


def test_phase_without_selected_hosts_does_nothing(inv):
    runner, output, _ = make_runner(inv, limit="head")
    assert runner.run_phase(Phase("workers only", ("no_such_role",), group="workers")) is True
    assert output.results == [] and output.messages == []


def test_apply_in_check_mode_plans_without_connecting(inv):
    runner, output, _ = make_runner(inv, check=True)
    called = []
    operation = files.file("/etc/app.conf", "name=w1\nport=50053\n", mode="0640")
    operation.after.append(lambda: called.append(True))
    host = inv.hosts["w1"]
    assert runner.apply(host, "base", operation, facts_for(operation, recorded_file_state())) == "changed"
    [result] = output.results
    assert (result.status, result.reason) == ("changed", "content differs")
    assert result.steps == ["upload 19 bytes -> /etc/app.conf (0640 root:root)"]
    assert called == [], "after-callbacks run only when the change is applied"
    assert runner.round_trips["w1"] == 0
    assert runner.exit_code() == 0


def test_apply_no_change_records_ok_with_its_reason(inv):
    runner, output, _ = make_runner(inv)
    operation = files.file("/etc/app.conf", "name=w1\nport=50052\n", mode="0640")
    status = runner.apply(inv.hosts["w1"], "base", operation, facts_for(operation, recorded_file_state()))
    assert status == "ok"
    assert output.results[0].reason.startswith("content sha256 ")
    assert runner.round_trips["w1"] == 0


def test_secret_diff_is_hidden_without_reading_the_host(inv):
    runner, output, stream = make_runner(inv, check=True, diff=True)
    operation = files.file("/etc/llama/api.key", "sk-very-secret\n", mode="0600", secret=True)
    runner.apply(inv.hosts["h1"], "head", operation, facts_for(operation, None))
    output.finish(runner.exit_code())
    assert output.results[0].diff == "--- /etc/llama/api.key\n+++ /etc/llama/api.key\n(content hidden: secret)\n"
    assert "sk-very-secret" not in stream.getvalue()
    assert runner.round_trips["h1"] == 0


def test_planning_error_fails_that_host_only(inv):
    runner, output, _ = make_runner(inv, check=True)

    def broken(facts_: Facts):
        raise OperationError("no package manager known for OS family 'unknown'")

    assert runner.apply(inv.hosts["w1"], "base", Operation("packages", [], broken), Facts({})) == "failed"
    assert output.results[0].reason == "no package manager known for OS family 'unknown'"
    assert [h.name for h in runner.healthy(runner.hosts)] == ["h1", "w2", "w3"]
    assert runner.exit_code() == 1


# --------------------------------------------------------------------------- hosts in a bounded pool, exit codes


def test_each_host_isolates_errors(inv):
    runner, output, _ = make_runner(inv)

    def work(host):
        if host.name == "w1":
            raise ConnectError("w1", "cannot connect to w1:22: timed out")
        if host.name == "w2":
            raise OperationError("w2: something broke")

    runner.each_host(runner.hosts, work)
    statuses = {r.host: r.status for r in output.results}
    assert statuses == {"w1": "unreachable", "w2": "failed"}
    assert [h.name for h in runner.healthy(runner.hosts)] == ["h1", "w3"]
    assert runner.exit_code() == 1, "a failure outranks an unreachable host"


def test_each_host_runs_forks_hosts_at_the_same_time(inv):
    runner, _, _ = make_runner(inv, forks=2)
    pair = threading.Barrier(2, timeout=10)  # broken, raising in the pool, unless two hosts wait here together
    seen = []

    def work(host):
        pair.wait()
        seen.append(host.name)

    runner.each_host(runner.hosts, work)
    assert sorted(seen) == ["h1", "w1", "w2", "w3"]


def test_each_host_never_runs_more_than_forks_hosts_at_once(inv):
    runner, _, _ = make_runner(inv, forks=2)
    lock, pool_full, overflow = threading.Lock(), threading.Event(), threading.Event()
    running, peak, seen = [0], [0], []

    def work(host):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            seen.append(host.name)
            if running[0] >= 2:
                pool_full.set()
            if running[0] > 2:
                overflow.set()
        # Nobody leaves before the pool is full, so the hosts overlap whatever the scheduling; then a host let in
        # beyond --forks has a moment to show up. A bounded pool only costs that moment: passing never depends on it.
        assert pool_full.wait(timeout=10), "two hosts never ran at once"
        overflow.wait(timeout=0.2)
        with lock:
            running[0] -= 1

    runner.each_host(runner.hosts, work)
    assert sorted(seen) == ["h1", "w1", "w2", "w3"]
    assert peak[0] == 2


def test_needs_all_phase_does_not_start_after_a_host_failed(inv):
    runner, output, _ = make_runner(inv)
    runner.mark_unreachable("w3", "connect", "timed out")
    assert runner.run_phase(Phase("head", ("no_such_role",), group="head", needs_all=True)) is False
    assert output.messages == ["phase head: not started, an earlier phase failed on some host"]
    assert runner.exit_code() == 3


@pytest.mark.parametrize(
    ("failed", "unreachable", "gate", "code"),
    [(False, False, False, 0), (False, False, True, 4), (False, True, True, 3), (True, True, True, 1)],
)
def test_the_exit_code_says_failed_before_unreachable_before_gate(inv, failed, unreachable, gate, code):
    runner, _, _ = make_runner(inv)
    if failed:
        runner.mark_failed("w1", "base", "boom")
    if unreachable:
        runner.mark_unreachable("w2", "connect", "refused")
    runner.gate_failed = gate
    assert runner.exit_code() == code
