"""llamafleet.haproxy: server names, the runtime-API commands (run against haproxy's recorded answers), and the
parser of `show servers state` + `show stat` on recordings of a real haproxy (up, down, drain, maint)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from recordings import RECORDED, recorded_lines, words

from llamafleet import haproxy

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


def servers(name: str) -> dict[str, haproxy.Server]:
    return haproxy.parse_servers(recorded_lines(f"haproxy/{name}"))


def states(name: str) -> dict[str, tuple[str, str, int, str]]:
    return {s.name: (s.admin, s.operational, s.sessions, s.status) for s in servers(name).values()}


# -- the parser, on haproxy 2.6's own answers (record.py) ---------------------------------------------------


def test_every_head_up_and_idle():
    found = servers("servers_up.txt")
    assert list(found) == ["c1", "c2", "c3"]  # configuration order
    assert states("servers_up.txt") == {name: ("ready", "up", 0, "UP") for name in ("c1", "c2", "c3")}
    assert all(server.in_rotation for server in found.values())
    assert (found["c1"].address, found["c1"].port) == ("127.0.0.1", 46283)


def test_a_head_refusing_and_a_head_answering_503_are_down_but_still_ready():
    """Down is what the checks found (connection refused; 503 while loading), ready is what was set: not the same."""
    assert states("servers_down.txt") == {
        "c1": ("ready", "up", 0, "UP"),
        "c2": ("ready", "down", 0, "DOWN"),
        "c3": ("ready", "down", 0, "DOWN"),
    }
    assert [s.name for s in servers("servers_down.txt").values() if s.in_rotation] == ["c1"]


def test_a_draining_head_counts_its_request_in_flight_and_a_head_in_maintenance_none():
    assert states("servers_drain.txt") == {
        "c1": ("drain", "up", 1, "DRAIN"),
        "c2": ("maint", "down", 0, "MAINT"),
        "c3": ("ready", "up", 0, "UP"),
    }
    assert not servers("servers_drain.txt")["c1"].in_rotation


def test_a_drained_head_has_no_session_left():
    assert states("servers_drained.txt")["c1"] == ("drain", "up", 0, "DRAIN")


def test_a_head_set_ready_again_is_in_rotation_at_once_before_its_next_check():
    """haproxy puts a server leaving maintenance straight back (UP 1/2: one failed check takes it out again), so a
    head goes back only once its /health answered 200."""
    back = servers("servers_back.txt")["c2"]
    assert (back.admin, back.operational, back.status) == ("ready", "up", "UP 1/2")
    assert back.in_rotation


def test_a_head_not_checked_yet_since_haproxy_started_is_up_but_not_known_to_serve():
    """Right after a (re)start haproxy counts every server UP until its checks say otherwise: a head with no model
    yet looks in rotation then. Only a passed check says it serves."""
    fresh = servers("servers_first_checks.txt")
    assert (fresh["c2"].status, fresh["c2"].check, fresh["c2"].in_rotation) == ("UP 1/2", "INI", True)
    assert not fresh["c2"].checked and not fresh["c2"].serving
    assert fresh["c1"].checked and not fresh["c1"].serving  # refused: its first check failed
    assert all(s.checked and s.serving for s in servers("servers_up.txt").values())
    down = servers("servers_down.txt")
    assert [name for name, s in down.items() if s.serving] == ["c1"]  # L4CON and L7STS (503) do not serve
    assert servers("servers_drain.txt")["c2"].checked  # maintenance: no check to wait for


@pytest.mark.parametrize(
    ("bits", "admin"),
    [
        (0, "ready"),
        (0x01, "maint"),
        (0x02, "maint"),
        (0x04, "maint"),
        (0x08, "drain"),
        (0x10, "drain"),
        (0x09, "maint"),
    ],
)
def test_admin_state_bits(bits, admin):
    lines = recorded_lines("haproxy/servers_up.txt")
    row = next(i for i, line in enumerate(lines) if line.startswith("3 heads 1 c1 "))
    fields = lines[row].split(" ")
    fields[6] = str(bits)  # srv_admin_state
    lines[row] = " ".join(fields)
    assert haproxy.parse_servers(lines)["c1"].admin == admin


def test_other_backends_are_left_out():
    assert haproxy.parse_servers(recorded_lines("haproxy/servers_up.txt"), backend="other") == {}


@pytest.mark.parametrize(
    "lines",
    [
        [],
        recorded_lines("haproxy/set_unknown.txt"),  # the socket answered something else
        recorded_lines("haproxy/stat_up.txt"),  # `show stat` alone
        recorded_lines("haproxy/servers_up.txt")[:6],  # `show servers state` alone
    ],
)
def test_an_answer_that_is_not_both_tables_is_refused(lines):
    with pytest.raises(ValueError, match="not the output"):
        haproxy.parse_servers(lines)


def test_a_server_missing_from_show_stat_is_refused():
    lines = [line for line in recorded_lines("haproxy/servers_up.txt") if not line.startswith("heads,c2,")]
    with pytest.raises(ValueError, match="no 'c2'"):
        haproxy.parse_servers(lines)


# -- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "c1", "gpu-big_2", "_x", "A" * 253])
def test_cluster_names_are_server_names_as_they_are(name):
    assert haproxy.server_name(name) == name
    assert haproxy.server_path(name) == f"heads/{name}"


@pytest.mark.parametrize(
    "name",
    ["", "-c1", "c1 c2", "c1;shutdown sessions server heads/c2", "c1\nshow stat", "c/1", "c1#", "é", "A" * 254, 7],
)
def test_names_a_configuration_line_or_a_runtime_command_could_split_are_refused(name):
    with pytest.raises(ValueError, match="cluster name"):
        haproxy.server_name(name)
    with pytest.raises(ValueError):
        haproxy.set_state(name, "drain")
    with pytest.raises(ValueError):
        haproxy.wait_drained(name, 10)


# -- commands -------------------------------------------------------------------------------------------------


def test_a_runtime_command_is_one_quoted_line_to_the_admin_socket():
    assert words(haproxy.show_servers()) == [
        *["printf", "%s\\n", "show servers state heads; show stat", "|"],
        *["socat", "-t", "10", "-T", "10", "-", "UNIX-CONNECT:/run/haproxy/admin.sock"],
    ]
    assert words(haproxy.runtime("show stat", socket="/tmp/a b.sock"))[-1] == "UNIX-CONNECT:/tmp/a b.sock"


@pytest.mark.parametrize("commands", [(), ("show stat\nshutdown sessions server heads/c1",)])
def test_a_runtime_command_is_one_non_empty_line(commands):
    with pytest.raises(ValueError, match="one non-empty line"):
        haproxy.runtime(*commands)


@pytest.mark.parametrize("state", ["up", "READY", "drain; show stat", ""])
def test_only_the_three_admin_states_can_be_set(state):
    with pytest.raises(ValueError, match="not one of ready, drain, maint"):
        haproxy.set_state("c1", state)


@pytest.mark.parametrize("seconds", [-1, 1.5, "10", True])
def test_the_drain_wait_takes_whole_seconds(seconds):
    with pytest.raises(ValueError, match="whole number"):
        haproxy.wait_drained("c1", seconds)


def fake_socat(tmp_path: Path, answer: str) -> dict[str, str]:
    """An environment whose `socat` prints the recorded answer `answer` and records what it was sent."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "socat"
    script.write_text(f'#!/bin/sh\ncat >> "{tmp_path}/sent"\ncat "{RECORDED / "haproxy" / answer}"\n')
    script.chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin", "LC_ALL": "C"}


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=30)


@needs_bash
def test_a_state_haproxy_accepted_exits_0(tmp_path):
    done = run(haproxy.set_state("c1", "drain"), fake_socat(tmp_path, "set_accepted.txt"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "sent").read_text() == "set server heads/c1 state drain\n"


@needs_bash
def test_a_state_haproxy_refused_fails_with_its_answer(tmp_path):
    done = run(haproxy.set_state("nosuch", "maint") + "; echo after", fake_socat(tmp_path, "set_unknown.txt"))
    # The command's own exit ends only its subshell: what follows it still runs.
    assert (done.returncode, done.stdout) == (0, "after\n")
    assert done.stderr == "haproxy set server heads/nosuch state maint: No such server.\n"
    assert run(haproxy.set_state("nosuch", "maint"), fake_socat(tmp_path, "set_unknown.txt")).returncode == 1


@needs_bash
def test_a_drained_head_ends_the_wait_at_once(tmp_path):
    done = run(haproxy.wait_drained("c1", 5), fake_socat(tmp_path, "stat_up.txt"))
    assert (done.returncode, done.stdout) == (0, "drained after 0 s\n")
    assert (tmp_path / "sent").read_text() == "show stat\n"


@needs_bash
def test_requests_still_in_flight_when_time_runs_out_exit_3(tmp_path):
    done = run(haproxy.wait_drained("c1", 0), fake_socat(tmp_path, "stat_drain.txt"))
    assert (done.returncode, done.stderr) == (3, "1 requests still in flight on heads/c1 after 0 s\n")


@needs_bash
def test_waiting_for_a_server_haproxy_does_not_have_fails(tmp_path):
    done = run(haproxy.wait_drained("c9", 5), fake_socat(tmp_path, "stat_drain.txt"))
    assert (done.returncode, done.stderr) == (1, "haproxy: no server heads/c9\n")


@needs_bash
def test_the_wait_for_a_reload_ends_when_haproxy_answers_with_the_configured_servers(tmp_path):
    done = run(haproxy.wait_configured(["c1", "c2", "c3"], 5), fake_socat(tmp_path, "servers_up.txt"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "sent").read_text() == "show servers state heads\n"


@needs_bash
@pytest.mark.parametrize("configured", [["c1", "c2"], ["c1", "c3", "c2"], ["c1", "c2", "c3", "c4"]])
def test_the_wait_for_a_reload_fails_while_haproxy_answers_for_another_configuration(tmp_path, configured):
    done = run(haproxy.wait_configured(configured, 0), fake_socat(tmp_path, "servers_up.txt"))
    assert done.returncode == 1
    assert done.stderr == f"haproxy serves [c1 c2 c3] after 0 s, not the configured [{' '.join(configured)}]\n"
