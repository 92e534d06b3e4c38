"""A host lost while a role prepares the others: the phase stops cleanly, the run exits 3."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from llamafleet import inventory
from llamafleet.output import Output
from llamafleet.roles import Role
from llamafleet.runner import EXIT_UNREACHABLE, Phase, Runner, RunOptions


def two_hosts_inventory(sshd) -> str:
    """Both loopback addresses of the test sshd, as a head and a worker (the same machine behind them)."""
    text = sshd.inventory_text()
    return text + "    workers:\n      hosts:\n        other: {ansible_host: 127.0.0.2}\n"


# Walk up from this shell to the sshd process serving the session and kill it: the connection drops
# mid-command, as when a host goes away (however the command is wrapped: sudo, timeout, sh -c).
KILL_OWN_SSHD_SESSION = (
    "p=$$; while [ \"$(cat /proc/$p/comm)\" != sshd ] && [ $p -gt 1 ]; do p=$(cut -d' ' -f4 /proc/$p/stat); done; "
    "[ $p -gt 1 ] && kill -9 $p; sleep 30"
)


@dataclass
class Prepared:
    by_host: dict[str, str] = field(default_factory=dict)


def role_whose_builder_drops() -> Role:
    """Like llama_cpp: prepare() works on one host for all (the build), operations use what it prepared."""

    def prepare(run, hosts):
        builder = hosts[0]
        run.remote(builder, KILL_OWN_SSHD_SESSION)
        run.handoff(Prepared).by_host.update({h.name: "prepared" for h in hosts})

    def operations(ctx):
        ctx.run.handoff(Prepared).by_host[ctx.name]  # noqa: B018 - what failed with a KeyError before
        return []

    return Role("droptest", operations, prepare=prepare)


def test_a_builder_lost_during_prepare_stops_the_phase_with_exit_3(sshd, tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(two_hosts_inventory(sshd))
    inv = inventory.load(path)
    stream = io.StringIO()
    output = Output(stream=stream)
    runner = Runner(inv, RunOptions(), output)
    code = runner.play([Phase("prepare", (role_whose_builder_drops(),)), Phase("later", (role_whose_builder_drops(),))])
    assert code == EXIT_UNREACHABLE, stream.getvalue()
    assert output.recap["local"]["unreachable"] == 1, stream.getvalue()
    assert output.recap["other"]["failed"] == 0
    text = stream.getvalue()
    assert "became unreachable while preparing; phase droptest stopped" in text
    assert "timed out" not in text and "KeyError" not in text
    assert "== later" not in text, "no later phase starts"
