"""The engine's operations against the lab's real systemd hosts, host keys checked."""

from __future__ import annotations

import io
from contextlib import closing
from pathlib import Path

import pytest

from llamafleet import inventory, roles
from llamafleet.errors import ConnectError
from llamafleet.output import Output
from llamafleet.runner import Phase, Runner, RunOptions
from llamafleet.ssh import HostConnection

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = roles.load_path(ROOT / "scripts/sample_role/role.py", "llamafleet_sample_role")


def converge(inv, **options) -> tuple[int, Output, Runner]:
    output = Output(json_mode=True, check=options.get("check", False), stream=io.StringIO())
    runner = Runner(inv, RunOptions(**options), output)
    return runner.play([Phase("sample", (SAMPLE,))]), output, runner


def counts(output: Output, status: str) -> dict[str, int]:
    return {host: counter.get(status, 0) for host, counter in output.recap.items()}


@pytest.fixture(scope="module")
def inv(lab):
    return inventory.load(lab.inventory)


def test_converge_then_nothing_to_change(inv, lab):
    code, first, _ = converge(inv)
    assert code == 0, [r for r in first.results if r.status != "changed" and r.status != "ok"]
    assert all(n > 0 for n in counts(first, "changed").values())
    code, second, runner = converge(inv)
    assert code == 0
    changed = [(r.host, r.operation, r.reason) for r in second.results if r.status == "changed"]
    assert counts(second, "changed") == {"head": 0, "w1": 0, "w2": 0}, f"not idempotent: {changed}"
    # One round trip per host: the first batch also reads what the first run read there (factmemory).
    assert all(n == 1 for n in runner.round_trips.values()), runner.round_trips
    services = [r for r in second.results if r.operation.startswith("service lfsample-a")]
    assert {r.reason for r in services} == {"active, enabled"}


def test_check_mode_reports_drift_and_leaves_it(inv, lab):
    converge(inv)
    with closing(HostConnection(inv.hosts["w1"])) as conn:
        conn.check("systemctl stop lfsample-b.service && rm /srv/lfsample/current")
        code, output, _ = converge(inv, check=True)
        assert code == 0
        changed = sorted(r.operation for r in output.results if r.status == "changed")
        assert changed == [
            "service lfsample-b.service running=True enabled=True",
            "symlink /srv/lfsample/current -> /srv/lfsample/data",
        ]
        assert conn.run("test -L /srv/lfsample/current").status == 1, "check mode changed nothing"
        code, output, _ = converge(inv)
        assert conn.check("systemctl is-active lfsample-b.service").stdout.strip() == "active"


def test_a_host_key_not_pinned_is_refused(lab, tmp_path):
    host = inventory.load(lab.inventory).hosts["w2"]
    pinned = Path(host.vars["known_hosts_file"]).read_text().splitlines()
    others = tmp_path / "known_hosts"
    others.write_text("\n".join(line for line in pinned if not line.startswith(host.connection.address + " ")) + "\n")
    host = inventory.load(lab.inventory, {"known_hosts_file": str(others)}).hosts["w2"]
    with closing(HostConnection(host)) as conn, pytest.raises(ConnectError, match="unknown SSH host key"):
        conn.run("true")
