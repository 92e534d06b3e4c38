"""The real operations through a real SSH connection: converge, re-converge, check mode, host keys."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from llamafleet import inventory
from llamafleet.errors import ConnectError
from llamafleet.operations import commands, files, packages
from llamafleet.output import Output
from llamafleet.roles import Role
from llamafleet.runner import Phase, Runner, RunOptions
from llamafleet.ssh import quote

ROOT = Path(__file__).resolve().parents[2]


def make_role(base: Path, payload: Path) -> Role:
    """A role confined to `base`, exercising each kind of operation and a handler (base's templates)."""

    def operations(ctx):
        yield files.directory(str(base / "etc"), mode="0750")
        yield files.file(str(base / "etc/app.conf"), f"name={ctx.name}\nport=1\n", notify=("note change",))
        yield files.template(str(base / "etc/host.yml"), ctx.render("host.yml.j2"), mode="0640")
        yield files.copy(str(base / "payload.bin"), payload, files.source_sha256(payload))
        yield files.symlink(str(base / "current"), str(base / "etc"))
        yield packages.present(["procps", "openssh-client"], ctx.os["family"])

    note = {"note change": lambda ctx: commands.run("note", quote("echo x >> %s", base / "handler.log"))}
    return Role("sshdtest", operations, template_dir=ROOT / "roles/base/templates", handlers=note)


@pytest.fixture
def setup(sshd, tmp_path):
    inv_path = tmp_path / "hosts.yml"
    inv_path.write_text(sshd.inventory_text())
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(10 * 1024 * 1024))
    base = tmp_path / "target"
    return inventory.load(inv_path), make_role(base, payload), base


def converge(inv, role, **opts) -> tuple[int, Output]:
    output = Output(json_mode=True, check=opts.get("check", False), stream=io.StringIO())
    runner = Runner(inv, RunOptions(**opts), output)
    code = runner.play([Phase("test", (role,))])
    return code, output


def totals(output: Output) -> dict[str, int]:
    recap = output.recap["local"]
    return {k: recap.get(k, 0) for k in ("ok", "changed", "failed", "unreachable")}


def test_converge_then_nothing_to_change(setup):
    inv, role, base = setup
    code, first = converge(inv, role)
    assert code == 0, [r for r in first.results if r.status == "failed"]
    assert totals(first)["changed"] >= 6
    assert (base / "etc/app.conf").read_text() == "name=local\nport=1\n"
    assert oct((base / "etc").stat().st_mode & 0o777) == "0o750"
    assert os.readlink(base / "current") == str(base / "etc")
    assert (base / "handler.log").read_text() == "x\n"
    code, second = converge(inv, role)
    assert code == 0
    assert totals(second) == {"ok": 6, "changed": 0, "failed": 0, "unreachable": 0}
    assert all(r.reason for r in second.results), "every no-change result says why"
    assert (base / "handler.log").read_text() == "x\n", "handler runs only when notified"


def test_check_mode_changes_nothing(setup):
    inv, role, base = setup
    code, output = converge(inv, role, check=True)
    assert code == 0
    assert totals(output)["changed"] >= 5
    assert not base.exists()


def test_drift_is_repaired_and_diffed(setup):
    inv, role, base = setup
    converge(inv, role)
    (base / "etc/app.conf").write_text("name=local\nport=2\n")
    code, output = converge(inv, role, check=True, diff=True)
    changed = [r for r in output.results if r.status == "changed"]
    assert [r.operation for r in changed] == [f"file {base}/etc/app.conf", "note"]
    assert "-port=2" in changed[0].diff and "+port=1" in changed[0].diff
    assert (base / "etc/app.conf").read_text().endswith("port=2\n"), "check mode left the drift alone"
    code, output = converge(inv, role)
    assert (base / "etc/app.conf").read_text().endswith("port=1\n")
    assert (base / "handler.log").read_text() == "x\nx\n"


def test_an_unknown_host_key_is_refused_unless_accepting_new_ones(sshd, tmp_path, connect):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv_path = tmp_path / "hosts.yml"
    inv_path.write_text(sshd.inventory_text().replace(str(sshd.known_hosts), str(empty)))
    with pytest.raises(ConnectError, match="unknown SSH host key"):
        connect(inv_path).run("true")
    assert connect(inv_path, accept_new_host_keys=True).run("true").ok
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519" in empty.read_text()
    assert connect(inv_path).run("true").ok, "the recorded key is trusted next time"


def test_a_changed_host_key_is_refused_even_in_accept_new_mode(sshd, tmp_path, connect):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    inv_path = tmp_path / "hosts.yml"
    inv_path.write_text(sshd.inventory_text().replace(str(sshd.known_hosts), str(known)))
    for accept_new in (False, True):
        with pytest.raises(ConnectError, match="CHANGED"):
            connect(inv_path, accept_new_host_keys=accept_new).run("true")


def two_hosts(sshd, tmp_path) -> inventory.Inventory:
    """head and w1: two loopback addresses served by the one test sshd."""
    text = sshd.inventory_text() + "    workers:\n      hosts:\n        w1: {ansible_host: 127.0.0.2}\n"
    path = tmp_path / "hosts.yml"
    path.write_text(text.replace("local:", "head:"))
    return inventory.load(path)


def failing_on(host_name: str, base: Path) -> Role:
    def operations(ctx):
        yield files.directory(str(base / ctx.name))
        if ctx.name == host_name:
            yield commands.run("a step that fails", "echo disk full >&2; exit 3")
        yield files.file(str(base / ctx.name / "done"), "done\n")

    return Role("fails_on_one_host", operations)


def test_a_failing_host_leaves_the_others_running_but_stops_phases_that_need_all(sshd, tmp_path):
    inv = two_hosts(sshd, tmp_path)
    base = tmp_path / "out"
    output = Output(json_mode=True, stream=io.StringIO())
    phases = [
        Phase("first", (failing_on("w1", base),)),
        Phase("second", (make_role(base / "second", tmp_path / "payload.bin"),), group="head"),
        Phase("last", (make_role(base / "last", tmp_path / "payload.bin"),), group="head", needs_all=True),
    ]
    (tmp_path / "payload.bin").write_bytes(b"x")
    code = Runner(inv, RunOptions(), output).play(phases)
    assert code == 1
    assert (base / "head/done").exists(), "the healthy host finished its phase"
    assert not (base / "w1/done").exists(), "the failed host stopped at its failure"
    failure = next(r for r in output.results if r.status == "failed")
    assert (failure.host, failure.error["status"], failure.error["output"]) == ("w1", 3, "disk full\n")
    assert (base / "second/etc/app.conf").exists(), "a later phase still runs on healthy hosts"
    assert not (base / "last").exists()
    assert any("phase last: not started" in m for m in output.messages)
