"""A command past its time limit is stopped on the host; a connection lost under a command is unreachable."""

from __future__ import annotations

import io
import secrets
import subprocess
import threading
import time

import pytest

from llamafleet import inventory
from llamafleet.errors import CommandError, ConnectError
from llamafleet.operations import commands
from llamafleet.output import Output
from llamafleet.roles import Role
from llamafleet.runner import EXIT_UNREACHABLE, Phase, Runner, RunOptions


def running(args: str) -> bool:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return any(line.strip() == args for line in listing.splitlines())


def gone_within(args: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(args):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("login", ["root", "lfpasswd"])
def test_a_timed_out_command_is_stopped_on_the_host(sshd, sudo_users, tmp_path, connect, login):
    become = {} if login == "root" else {"ansible_become": True, "ansible_become_password": sudo_users[login]}
    conn = connect(sshd.write_inventory(tmp_path / "hosts.yml", ansible_user=login, **become))
    sleeper = f"sleep 300.{secrets.randbelow(10**9)}"  # unique in the process list
    started = time.monotonic()
    with pytest.raises(CommandError, match="timed out after 2 s") as failure:
        conn.run(f"{sleeper}; true", timeout=2)
    assert failure.value.status == -1
    assert time.monotonic() - started < 8, "the limit, not the 15 s backstop"
    assert gone_within(sleeper, 12), f"{sleeper} still runs on the host"
    assert conn.run("true").ok, "the connection is still usable"


def test_a_command_killed_by_a_signal_is_not_a_lost_connection(conn):
    with pytest.raises(CommandError, match="without an exit status") as failure:
        conn.run("kill -KILL $$")  # sshd reports exit-signal, not exit-status
    assert failure.value.status == -1
    assert conn.run("true").ok, "the same connection goes on"


def test_a_connection_lost_mid_command_is_unreachable(sshd, conn):
    client_port = conn.open().transport.sock.getsockname()[1]
    killed: list[int] = []
    killer = threading.Timer(1.0, lambda: killed.extend(sshd.kill_session(client_port)))
    killer.start()
    started = time.monotonic()
    with pytest.raises(ConnectError, match="connection lost during: sleep 8") as failure:
        conn.run("sleep 8")
    killer.join()
    assert killed, "the sshd serving the connection was found and killed"
    assert time.monotonic() - started < 5
    assert failure.value.exit_code == 3
    assert conn.run("true").ok, "the next command connects again"


def test_a_run_that_loses_its_connection_exits_3(sshd, tmp_path):
    inv = inventory.load(sshd.write_inventory(tmp_path / "hosts.yml"))
    role = Role("sleeps", lambda ctx: [commands.run("a long step", "sleep 8")])
    output = Output(json_mode=True, stream=io.StringIO())
    runner = Runner(inv, RunOptions(), output)
    client_port = runner.connection(inv.head).open().transport.sock.getsockname()[1]
    killer = threading.Timer(2.0, sshd.kill_session, (client_port,))
    killer.start()
    code = runner.play([Phase("test", (role,))])
    killer.join()
    assert code == EXIT_UNREACHABLE
    assert output.recap["local"]["unreachable"] == 1
    assert not any("timed out" in str(r) for r in output.results)
