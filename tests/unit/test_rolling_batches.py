"""Rolling changes behind balancers (llamafleet.rolling) over a recorded balancer: HAProxy's answers as recorded
from a real one (tests/fixtures/recorded/haproxy), what is asked of it in which order, and what a stop says."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from inventory_tree import write_tree

from llamafleet import cluster, inventory, rolling
from llamafleet.output import Output
from llamafleet.ssh import Result

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded" / "haproxy"

TEXT = """\
all:
  children:
    head:
      hosts:
        {clusters}
    workers:
      hosts:
        {workers}
    balancers:
      hosts:
        lb1: {{ansible_host: 10.0.0.9}}
"""


def fleet_of(tmp_path, names=("c1", "c2", "c3")):
    heads = "\n        ".join(f"{n}-head: {{ansible_host: 10.0.{i}.1, cluster: {n}}}" for i, n in enumerate(names, 1))
    workers = "\n        ".join(f"{n}-w1: {{ansible_host: 10.0.{i}.2, cluster: {n}}}" for i, n in enumerate(names, 1))
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": TEXT.format(clusters=heads, workers=workers)}))
    return inv, cluster.fleet(inv)


class RecordedBalancers:
    """The balancers' runner: each command answered as the recorded haproxy answered it; `down` clusters never
    come back UP, `refuse` makes every `set server` fail as for an unknown server."""

    def __init__(self, inv, down=(), refuse=False, drain_status=0) -> None:
        self.hosts = [inv.hosts["lb1"]]
        self.output = Output(json_mode=True, stream=io.StringIO())
        self.down, self.refuse, self.drain_status = set(down), refuse, drain_status
        self.asked: list[str] = []

    def remote(self, host, command: str) -> Result:
        if "set server" in command:
            what = next(word for word in command.split("'") if word.startswith("set server"))
            self.asked.append(what)
            if self.refuse:
                return Result(command, 1, "", (RECORDED / "set_unknown.txt").read_text())
            return Result(command, 0, "", "")
        if "wait-drained" in command:
            self.asked.append("wait drained")
            return Result(command, self.drain_status, "drained after 0 s", "3 requests still in flight")
        self.asked.append("show servers")
        text = (RECORDED / "servers_up.txt").read_text()
        for name in self.down:
            text = _down(text, name)
        return Result(command, 0, text, "")

    def each_host(self, hosts, work) -> None:
        for host in hosts:
            work(host)


def _down(text: str, name: str) -> str:
    """`text` with server `name` shown as the recording shows c3 answering 503 (a head loading): DOWN."""
    recorded = (RECORDED / "servers_down.txt").read_text().splitlines()
    state = next(line for line in recorded if line.startswith("3 heads 3 c3 "))
    stat = next(line for line in recorded if line.startswith("heads,c3,"))
    lines = []
    for line in text.splitlines():
        if line.startswith("3 heads ") and line.split()[3] == name:
            line = state.replace(" c3 ", f" {name} ", 1)
        elif line.startswith(f"heads,{name},"):
            line = stat.replace("heads,c3,", f"heads,{name},", 1)
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_each_batch_is_drained_changed_and_put_back_before_the_next(tmp_path):
    inv, fleet = fleet_of(tmp_path)
    balancers, changed = RecordedBalancers(inv), []

    def change(hosts):
        changed.append((sorted(hosts), list(balancers.asked)))
        return 0

    assert rolling.roll(balancers, fleet, 2, change, "deploying m.gguf", wait_all=True) == 0
    assert [hosts for hosts, _ in changed] == [["c1-head", "c1-w1", "c2-head", "c2-w1"], ["c3-head", "c3-w1"]]
    first_asked = changed[0][1]
    assert first_asked[-4:] == ["set server heads/c1 state drain", "set server heads/c2 state drain",
                                "wait drained", "wait drained"]  # fmt: skip
    after_first = changed[1][1][len(first_asked) :]
    assert after_first[:2] == ["set server heads/c1 state ready", "set server heads/c2 state ready"]
    assert "show servers" in after_first and after_first[-2:] == ["set server heads/c3 state drain", "wait drained"]
    said = balancers.output.messages
    assert said[-1] == "rolling: cluster c3: back in rotation"


def test_a_failed_cluster_stops_the_roll_naming_what_changed_and_what_did_not(tmp_path):
    inv, fleet = fleet_of(tmp_path)
    balancers = RecordedBalancers(inv)
    codes = iter([0, 2, 0])
    assert rolling.roll(balancers, fleet, 1, lambda hosts: next(codes), "deploying m.gguf", wait_all=True) == 2
    assert balancers.output.messages[-1] == (
        "rolling stopped: deploying m.gguf failed on cluster c2 (exit 2); cluster c2 stays out of rotation; "
        "c1 changed and serve; c3 unchanged and serve"
    )
    assert "set server heads/c2 state ready" not in balancers.asked
    assert "set server heads/c3 state drain" not in balancers.asked


def test_a_head_that_does_not_come_back_stops_the_roll(tmp_path, monkeypatch):
    monkeypatch.setattr(rolling, "READY_SECONDS", 0)
    monkeypatch.setattr(rolling, "POLL_SECONDS", 0)
    inv, fleet = fleet_of(tmp_path)
    balancers = RecordedBalancers(inv, down={"c1"})
    assert rolling.roll(balancers, fleet, 1, lambda hosts: 0, "deploying m.gguf", wait_all=True) == 4
    last = balancers.output.messages[-1]
    assert last.startswith(
        "rolling stopped: cluster c1 did not come back: lb1: not back in rotation after 0 s (c1-head"
    )
    assert last.endswith("c2, c3 unchanged and serve")


def test_a_provision_waits_only_for_heads_that_were_serving(tmp_path, monkeypatch):
    monkeypatch.setattr(rolling, "READY_SECONDS", 0)
    inv, fleet = fleet_of(tmp_path, names=("c1",))
    balancers = RecordedBalancers(inv, down={"c1"})  # no model yet: it was not in rotation, and is not after
    assert rolling.roll(balancers, fleet, 1, lambda hosts: 0, "provisioning", wait_all=False) == 0


def test_a_balancer_that_refuses_the_drain_changes_nothing(tmp_path):
    inv, fleet = fleet_of(tmp_path)
    balancers, changed = RecordedBalancers(inv, refuse=True), []
    assert rolling.roll(balancers, fleet, 1, changed.append, "deploying m.gguf", wait_all=True) == 4
    assert changed == []
    assert "No such server" in balancers.output.messages[-1]


def test_requests_still_in_flight_at_the_deadline_are_said_and_the_roll_goes_on(tmp_path):
    inv, fleet = fleet_of(tmp_path, names=("c1",))
    balancers = RecordedBalancers(inv, drain_status=rolling.DRAIN_RAN_OUT)
    assert rolling.roll(balancers, fleet, 1, lambda hosts: 0, "deploying m.gguf", wait_all=True) == 0
    assert "rolling: lb1: 3 requests still in flight; c1-head changes anyway" in balancers.output.messages


@pytest.mark.parametrize("value", ["0", "-1", "x", "", "1.5"])
def test_serial_is_a_whole_number_of_at_least_one(value):
    with pytest.raises(rolling.UsageError, match=f"--serial {value!r}: use a whole number of at least 1"):
        rolling.parse_serial(value)
