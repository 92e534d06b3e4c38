"""The first task of a process reads ahead what the last process of the same command line asked for on each host."""

from __future__ import annotations

import io
import socket
import threading

import pytest
from test_converge import make_role, totals

from llamafleet import factmemory, inventory
from llamafleet.output import Output
from llamafleet.runner import EXIT_UNREACHABLE, Phase, Runner, RunOptions, read_ahead
from llamafleet.ssh import ConnectionPool

COMMAND_LINE = ["provision", "-i", "hosts.yml"]


@pytest.fixture
def setup(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    inv_path = tmp_path / "hosts.yml"
    inv_path.write_text(sshd.inventory_text())
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"payload\n")
    return inventory.load(inv_path), make_role(tmp_path / "target", payload)


def process(inv, role, pools: list[ConnectionPool], before_the_run=lambda pool: None) -> tuple[int, Output, Runner]:
    """One process of COMMAND_LINE: its pool reads ahead, then the run plays the role."""
    pool = ConnectionPool()
    pools.append(pool)
    options = RunOptions()
    read_ahead(pool, inv, options, COMMAND_LINE)
    before_the_run(pool)
    output = Output(json_mode=True, stream=io.StringIO())
    runner = Runner(inv, options, output, pool)
    return runner.play([Phase("test", (role,))]), output, runner


@pytest.fixture
def pools():
    made: list[ConnectionPool] = []
    yield made
    for pool in made:
        pool.close()


def test_the_next_process_reads_every_fact_ahead_and_its_run_makes_no_round_trip_of_its_own(setup, pools):
    inv, role = setup
    assert process(inv, role, pools)[0] == 0  # converges; nothing remembered yet: nothing read ahead
    code, output, _ = process(inv, role, pools)
    assert code == 0 and totals(output)["changed"] == 0
    asked = pools[-1].asked()["local"]
    assert factmemory.recall(factmemory.of_command_line(inv.path, COMMAND_LINE))["local"] == asked
    ahead: dict[str, list[str]] = {}

    def read_before_the_run(pool: ConnectionPool) -> None:
        connection = pool.connection(inv.hosts["local"], accept_new_host_keys=False, base_dir=inv.path.parent)
        connection.caught_up()
        ahead.update(connection.fact_outputs)
        assert connection.ahead_trips == 1

    code, output, runner = process(inv, role, pools, read_before_the_run)
    assert set(asked) <= set(ahead), "every fact the last process asked for was read before the run began"
    assert runner.round_trips == {"local": 1}, "the read ahead is the run's one round trip"
    assert code == 0 and totals(output) == {"ok": 6, "changed": 0, "failed": 0, "unreachable": 0}


def test_a_read_ahead_that_cannot_connect_is_reported_by_the_run_as_the_run_itself_would(setup, pools, tmp_path):
    inv, role = setup
    with socket.socket() as closed:  # a port where nothing listens
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    text = (tmp_path / "hosts.yml").read_text().replace(str(inv.hosts["local"].connection.port), str(port))
    (tmp_path / "hosts.yml").write_text(text)
    inv = inventory.load(tmp_path / "hosts.yml")
    alone = Output(json_mode=True, stream=io.StringIO())
    assert Runner(inv, RunOptions(), alone).play([Phase("test", (role,))]) == EXIT_UNREACHABLE
    pool = ConnectionPool()
    pools.append(pool)
    connection = pool.connection(inv.hosts["local"], accept_new_host_keys=False, base_dir=tmp_path)
    connection.read_ahead(["true"], threading.Semaphore(1))
    assert connection.ahead_trips == 1
    ahead = Output(json_mode=True, stream=io.StringIO())
    runner = Runner(inv, RunOptions(), ahead, pool)
    assert runner.play([Phase("test", (role,))]) == EXIT_UNREACHABLE
    assert runner.round_trips == {"local": 1}, "one attempt to connect: the read ahead's"
    assert [(r.status, r.reason) for r in ahead.results] == [(r.status, r.reason) for r in alone.results]
    assert "cannot connect to 127.0.0.1" in ahead.results[0].reason


def test_a_read_ahead_whose_batch_breaks_fails_the_host_as_the_runs_own_batch_would(setup, pools):
    inv, role = setup
    host = inv.hosts["local"]
    pool = ConnectionPool()
    pools.append(pool)
    connection = pool.connection(host, accept_new_host_keys=False, base_dir=inv.path.parent)
    connection.read_ahead(["echo before", "exit 3"], threading.Semaphore(1))  # ends the batch's shell
    output = Output(json_mode=True, stream=io.StringIO())
    runner = Runner(inv, RunOptions(), output, pool)
    assert runner.play([Phase("test", (role,))]) != 0
    assert [(r.status, r.operation) for r in output.results] == [("failed", "error")]
    assert "gather facts" in output.results[0].reason and "missing CommandOutput('exit 3',)" in output.results[0].reason
    assert runner.round_trips == {"local": 1}, "the run did not read again what the read ahead failed to"
