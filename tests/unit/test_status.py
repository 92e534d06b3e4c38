"""`invoke status` rows parsed from the status script's output recorded on real lab hosts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from inventory_tree import GOOD, write_tree
from recordings import RECORDED

from llamafleet import inventory, status
from llamafleet.output import OpResult, Output
from llamafleet.shell import quote

STATUS = RECORDED / "status"


def row(name: str, part: str, port: int | None, edit=None):
    text = (STATUS / name).read_text()
    return status.parse(part, part, port, edit(text) if edit else text)


def test_a_serving_head_reports_its_build_service_model_and_health():
    head = row("head_serving.txt", "head", 8080)
    assert (head.os, head.version, head.release) == ("debian 12 x86_64", "b11434", "b11434-cpu-374e3cb274cd")
    assert (head.unit, head.state, head.restarts) == ("llama-server.service", "active (running)", 0)
    assert head.uptime_s == int(10985.11 - 10876.808149)  # /proc/uptime minus the unit's monotonic start
    assert head.listening == ["0.0.0.0:8080"]  # port 22 is not the API's
    assert (head.model, head.model_state) == ("vdev-tiny.gguf", "present")
    assert (head.health, head.slots_busy, head.slots_total) == ("200 ok", 0, 1)


def test_an_active_worker_reports_its_service_and_no_model_or_health():
    worker = row("worker_active.txt", "worker", 50052)
    assert (worker.unit, worker.state, worker.version) == ("llama-rpc.service", "active (running)", "b11434")
    assert worker.listening == ["10.213.85.3:50052"] and worker.uptime_s > 0
    assert (worker.model, worker.health, worker.slots_total) == (None, None, None)


@pytest.mark.parametrize(
    ("name", "part", "port"), [("head_bare.txt", "head", 8080), ("worker_bare.txt", "worker", 50052)]
)
def test_a_bare_host_reports_no_service_release_or_listener(name, part, port):
    found = row(name, part, port)
    assert (found.state, found.uptime_s, found.version, found.release, found.listening) == (
        "absent",
        None,
        None,
        None,
        [],
    )
    if part == "head":
        assert (found.model_state, found.health, found.slots_total) == ("none deployed", "not answering", None)


def test_a_busy_slot_is_counted():
    head = row("head_serving.txt", "head", 8080, lambda t: t.replace('"is_processing":false', '"is_processing":true'))
    assert (head.slots_busy, head.slots_total) == (1, 1)


@pytest.mark.parametrize(
    ("edit", "state"),
    [
        (lambda t: t.replace("@lf file 1130144 vdev-tiny.gguf\n", ""), "missing"),
        (
            lambda t: t.replace("@lf file 1130144 ", "@lf file 1130000 "),
            "changed size (1130000 bytes, deployed 1130144)",
        ),
        (lambda t: t.replace('"name": "vdev-tiny.gguf"', '"name": 7'), "unreadable /etc/llamafleet/model.json"),
    ],
)
def test_the_model_state_says_missing_changed_size_or_unreadable_record(edit, state):
    assert row("head_serving.txt", "head", 8080, edit).model_state == state


def test_a_loading_head_says_503_and_a_restarting_worker_counts_its_restarts():
    loading = row("head_serving.txt", "head", 8080, lambda t: t.replace("HTTP/1.1 200 OK Server", "HTTP/1.1 503 x", 1))
    assert loading.health == "503 loading"
    looping = row(
        "worker_active.txt",
        "worker",
        50052,
        lambda t: t.replace("NRestarts=0", "NRestarts=7").replace("ActiveState=active", "ActiveState=activating"),
    )
    assert (looping.restarts, looping.uptime_s) == (7, None)
    assert "7 restarts" in status.table([looping])


def test_noise_around_the_marked_lines_is_ignored():
    head = row("head_serving.txt", "head", 8080, lambda t: "Welcome to host0!\n@lfx junk\n" + t + "bye\n")
    assert head.health == "200 ok" and head.version == "b11434"


def test_table_lists_rows_in_the_given_order_with_unreachable_hosts():
    rows = [
        row("head_serving.txt", "head", 8080),
        status.Row("w1", "worker", reachable=False, error="connect failed: [Errno 111] Connection refused"),
        row("worker_active.txt", "worker", 50052),
    ]
    lines = status.table(rows).splitlines()
    assert lines[0].split()[:3] == ["HOST", "PART", "SERVICE"]
    assert [line.split()[0] for line in lines[1:]] == ["head", "w1", "worker"]
    assert "unreachable: connect failed" in lines[2]
    assert "vdev-tiny.gguf (present)" in lines[1] and "0/1" in lines[1]


def test_the_key_never_appears_in_the_script():
    script = status.script("head", 8080, ("127.0.0.1", 8080))
    assert quote("%s", "/etc/llamafleet/api-key") in script and "read -r key" in script
    assert "Bearer %s" in script  # filled by the host's printf builtin, not by an argument
    assert status.script("worker", 50052, None).count("http") == 0


class RecordedRunner:
    """Answers each host's status script with a recording (or as an unreachable host) and keeps what it was sent."""

    def __init__(self, inv, answers: dict[str, str | None]) -> None:
        self.hosts = [inv.hosts[name] for name in answers]  # in the order given, not the inventory's
        self.answers, self.sent, self.closed = answers, {}, False
        self.output = Output(json_mode=True)

    def each_host(self, hosts, work) -> None:
        for host in hosts:
            if self.answers[host.name] is None:
                self.output.record(OpResult(host.name, "connect", "connect", "unreachable", f"{host.name}: refused"))
            else:
                work(host)

    def remote(self, host, command: str) -> SimpleNamespace:
        self.sent[host.name] = command
        return SimpleNamespace(stdout=(STATUS / self.answers[host.name]).read_text())

    def close(self) -> None:
        self.closed = True

    def exit_code(self) -> int:
        return 3 if self.output.results else 0


def test_read_gives_the_head_first_then_the_workers_in_inventory_order(tmp_path):
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": GOOD}))
    runner = RecordedRunner(inv, {"w2": "worker_active.txt", "w1": None, "h1": "head_serving.txt"})
    rows, code = status.read(inv, lambda: runner)
    assert [(r.host, r.part, r.reachable) for r in rows] == [
        ("h1", "head", True),
        ("w1", "worker", False),
        ("w2", "worker", True),
    ]
    assert (rows[0].health, rows[2].state, rows[1].error) == ("200 ok", "active (running)", "w1: refused")
    assert "/health" in runner.sent["h1"] and "/health" not in runner.sent["w2"]  # only the head's API is asked
    assert code == 3 and runner.closed


def test_a_tunnelled_host_shows_its_peers_and_the_oldest_handshake():
    from llamafleet import status as status_mod

    key_a, key_b = "A" * 42 + "E=", "B" * 42 + "g="
    text = f"@lf wg {key_a}\t1765000000\n@lf wg {key_b}\t1765000030\n@lf wg now 1765000042\n"
    assert status_mod.parse("w1", "worker", 50052, text).tunnel == "2 peer(s), handshake 42s ago"
    assert status_mod.parse("w1", "worker", 50052, "@lf wg down\n@lf wg now 1\n").tunnel == "down"
    assert status_mod.parse("w1", "worker", 50052, f"@lf wg {key_a}\t0\n@lf wg now 9\n").tunnel == (
        "1 peer(s), not all shook hands"
    )
    assert "wg show lfwg0 latest-handshakes" in status_mod.script("worker", 50052, None, None, "lfwg0")
