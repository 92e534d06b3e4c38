"""Role firewall, changing frontends: llamafleet's rules leave the old frontend, planned from real output.

Recorded by `tests/fixtures/recorded/firewall/record.py --switch` on a lab at 10.213.46.x (firewalld's on
one at 10.213.52.x, with someone else's rules beside ours): head with ufw, w1 with firewalld, w2 with
nftables, each converged, then left (ufw disabled, firewalld stopped) and cleaned by the role after
switching frontends.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from firewall_recordings import FIREWALL, plan, recorded, shell_words
from recordings import words

from llamafleet.errors import OperationError
from llamafleet.operations import Facts, NoChange, Upload
from llamafleet.roles.firewall import firewalld_config as FWC

F, UFW, FWD, NFT, SWITCH = FIREWALL._facts, FIREWALL._ufw, FIREWALL._firewalld, FIREWALL._nftables, FIREWALL._switch
HEAD, W1, W2 = "10.213.46.2", "10.213.46.3", "10.213.46.4"


def nftables(state: str) -> list[str]:
    """The nftables leftover recordings of one state, in the order removed() lists its facts."""
    stems = ("nft_table", "nft_table_file", "nftables_conf", "nftables_conf_path", "nftables_conffile", "nftables_unit")
    return [f"leftover_{stem}_{state}.txt" for stem in stems]


def firewalld(state: str) -> list[str]:
    return [f"firewalld_leftover_{stem}_{state}.txt" for stem in ("state", "zones", "ipsets", "policies")]


def facts_of(operation, names: list[str]) -> Facts:
    return Facts({f.key: f.process(recorded(n)) for f, n in zip(operation.facts, names, strict=True)})


# --------------------------------------------------------------------------- which frontend is in charge


@pytest.mark.parametrize(
    ("recording", "managed", "other"),
    [
        ("frontends_ufw_applied.txt", "nftables", "ufw"),
        ("frontends_ufw_applied.txt", "firewalld", "ufw"),
        ("frontends_firewalld_fresh.txt", "nftables", "firewalld"),
        ("frontends_firewalld_fresh.txt", "ufw", "firewalld"),
    ],
)
def test_another_frontend_in_charge_stops_the_host(recording, managed, other):
    with pytest.raises(OperationError, match=f"{other} is also in charge") as error:
        plan(SWITCH.alone(managed), recording)
    assert f"`{SWITCH.TURN_OFF[other]}`" in str(error.value) and f"set firewall: {other}" in str(error.value)


@pytest.mark.parametrize(
    ("recording", "managed"),
    [
        ("frontends_ufw_applied.txt", "ufw"),
        ("frontends_ufw_fresh.txt", "nftables"),  # installed, inactive: not in charge
        ("frontends_firewalld_fresh.txt", "firewalld"),
        ("frontends_nftables_applied.txt", "ufw"),  # nftables.service enabled is no policy of its own
    ],
)
def test_managed_frontend_alone_is_no_change(recording, managed):
    assert plan(SWITCH.alone(managed), recording) == NoChange(f"no frontend but {managed} in charge")


# --------------------------------------------------------------------------- ufw left behind


def test_traced_fact_reads_only_when_the_test_passes():
    fact = UFW.leftovers()
    assert fact.command().startswith(
        "if [ -d /etc/ufw ] && grep -qs -e comment=6c6c616d61666c656574 /etc/ufw/user.rules"
    )
    assert bytes.fromhex("6c6c616d61666c656574").decode() == "llamafleet"
    assert fact.process([]) is None  # no trace: ufw itself never started
    assert fact.key != F.UfwStatus().key


def test_inactive_ufw_loses_exactly_our_rules():
    result = plan(UFW.removed(), "ufw_leftovers_left.txt")
    api = ["to", "any", "port", "8080", "proto", "tcp"]
    assert shell_words(result) == [
        *(["ufw", "delete", "allow", "from", address, *api] for address in (W2, W1, HEAD)),
        ["ufw", "delete", "allow", "22/tcp"],
        ["ufw", "delete", "deny", "8080/tcp"],
    ]
    assert result.reason == "5 llamafleet rule(s) left in inactive ufw"


def test_active_ufw_is_never_emptied():
    with pytest.raises(OperationError, match="ufw is active"):
        plan(UFW.removed(), "ufw_leftovers_left_active.txt")


def test_clean_ufw_is_no_change():
    assert recorded("ufw_leftovers_cleaned.txt") == []
    assert plan(UFW.removed(), "ufw_leftovers_cleaned.txt") == NoChange("ufw holds no llamafleet rule")


def test_foreign_ufw_rules_are_not_ours():
    state = F.UfwStatus().process(recorded("ufw_status_stale.txt"))
    assert ("allow", "9999/tcp") in state.rules and ("allow", "9999/tcp") not in UFW.ours(state)


# --------------------------------------------------------------------------- firewalld left behind


def test_stopped_firewalld_loses_our_policy_and_ipsets_offline():
    result = plan(FWD.removed(), *firewalld("left"))
    assert shell_words(result) == [
        ["firewall-offline-cmd", "--delete-policy=llamafleet"],  # its rich rules go with it
        ["firewall-offline-cmd", "--delete-ipset=llamafleet-50052-tcp"],  # after the rules that use them
        ["firewall-offline-cmd", "--delete-ipset=llamafleet-50052-tcp-v6"],
    ]  # someone else's ipset, port and rich rules (recorded beside ours) stay
    assert result.reason == "stopped firewalld: policy to delete, 2 ipsets to delete"


def test_rich_rules_of_versions_before_the_policy_leave_the_zones():
    # firewalld as versions before the policy left it (rules in zone public), read through the leftover facts.
    names = [f"firewalld_{stem}_zoned.txt" for stem in ("state", "zones_permanent", "ipsets_permanent")]
    found = FWD.leftovers()
    lines = [recorded(name) for name in names] + [recorded("firewalld_policies_permanent_zoned.txt")]
    change = FWD.leftover_diff(found, Facts({f.key: f.process(text) for f, text in zip(found, lines, strict=True)}))
    assert [where for where, _ in change.rules_removed] == ["--zone=public"] * 3
    assert all(FWC.ours(text) for _, text in change.rules_removed)  # the zone's other rules stay
    assert not change.policy_deleted and FWD.leftover_summary(change) == "2 ipsets, 3 rich rules"


def test_running_firewalld_is_refused():
    with pytest.raises(OperationError, match="firewalld is running"):
        plan(FWD.removed(), *firewalld("left_running"))


def test_clean_firewalld_is_no_change():
    result = plan(FWD.removed(), *firewalld("cleaned"))
    assert result == NoChange("firewalld holds no llamafleet ipset, policy or rich rule")


def test_firewalld_trace_is_a_file_test():
    command = FWD.leftovers()[1].command()
    assert command.startswith("if [ -d /etc/firewalld ] && { ls /etc/firewalld/ipsets/llamafleet-*.xml")
    assert "test -e /etc/firewalld/policies/llamafleet.xml" in command
    assert "--list-all-zones" in command  # firewall-cmd runs only once a trace is found


# --------------------------------------------------------------------------- nftables left behind


def test_nftables_leftovers_removed_include_first():
    result = plan(NFT.removed(), *nftables("left"))
    upload, *rest = result.steps
    assert isinstance(upload, Upload) and upload.path == "/etc/nftables.conf"
    assert (upload.mode, upload.owner, upload.group) == ("0755", "root", "root")  # as the file was
    assert [words(step.command) for step in rest] == [
        ["systemctl", "disable", "nftables.service"],
        ["rm", "-f", "--", "/etc/nftables.d/llamafleet.nft"],
        ["nft", "delete", "table", "inet", "llamafleet"],
    ]
    # What is written back is the file as the package shipped it (dpkg's md5), hence the disable.
    [conffile] = recorded("leftover_nftables_conffile_left.txt")
    assert hashlib.md5(upload.content, usedforsecurity=False).hexdigest() == conffile.split()[1]
    cleaned = recorded("leftover_nftables_conf_cleaned.txt")
    assert cleaned[0] == "present" and upload.content.decode() == "\n".join(cleaned[1:]) + "\n"  # as the host has it


def test_nftables_conf_of_someone_else_keeps_its_service():
    operation = NFT.removed()
    values = facts_of(operation, nftables("left"))
    conf = recorded("leftover_nftables_conf_left.txt")
    values._values[operation.facts[2].key] = "\n".join([*conf[:3], 'include "/etc/nftables.d/site.nft"', *conf[3:]])
    commands = [step.command for step in operation.plan(values).steps[1:]]
    assert "systemctl disable nftables.service" not in commands
    assert 'include "/etc/nftables.d/site.nft"' in operation.plan(values).steps[0].content.decode()


def test_nftables_cleaned_is_no_change():
    assert plan(NFT.removed(), *nftables("cleaned")) == NoChange("no llamafleet table, table file or include")


@pytest.mark.parametrize(
    ("conf", "kept"),
    [
        ('flush ruleset\n\n# llamafleet (role firewall)\ninclude "/etc/nftables.d/llamafleet.nft"', "flush ruleset\n"),
        (
            'include "/etc/nftables.d/*.nft"\ninclude "/etc/nftables.d/llamafleet.nft"',
            'include "/etc/nftables.d/*.nft"\n',
        ),
        ('  include "/etc/nftables.d/llamafleet.nft"\nx', "x\n"),
    ],
)
def test_without_include_drops_our_include_and_its_comment_only(conf, kept):
    assert NFT.without_include(conf) == kept


def test_deb_conffile_gives_the_packaged_md5_of_that_file_only():
    fact = F.DebConffile("nftables", "/etc/nftables.conf")
    assert fact.process(recorded("leftover_nftables_conffile_left.txt")) == "4d4241fcd44b9a69b74f69d571f35a20"
    assert fact.process([]) is None
    assert F.DebConffile("nftables", "/etc/other.conf").process(recorded("leftover_nftables_conffile_left.txt")) is None


# --------------------------------------------------------------------------- firewall: none


def _left_alone(ufw: str, firewalld_state: str, nft_state: str):
    operation = SWITCH.left_alone()
    return plan(operation, f"ufw_leftovers_{ufw}.txt", *firewalld(firewalld_state), *nftables(nft_state))


def test_none_warns_about_rules_left_and_changes_nothing():
    result = _left_alone("left", "left", "left")
    assert isinstance(result, NoChange)
    assert result.reason.startswith("warning: firewall: none leaves llamafleet's rules where they are: ")
    assert "ufw (5 rules), firewalld (policy llamafleet, 2 ipsets), nftables (" in result.reason


def test_none_without_leftovers_is_quiet():
    assert _left_alone("cleaned", "cleaned", "cleaned") == NoChange(
        "firewall: none, and no llamafleet rule in any frontend"
    )


# --------------------------------------------------------------------------- traces of our rules, run by a real shell


OURS = "comment=6c6c616d61666c656574"  # how ufw's rule files hold our rules' comment (hex of "llamafleet")


def traced(command: str, root: Path, path: str) -> subprocess.CompletedProcess:
    """`command` run by sh with /etc/ moved under `root` and PATH set to `path`."""
    moved = command.replace("/etc/", f"{root}/etc/")
    return subprocess.run(["/bin/sh", "-c", moved], env={"PATH": path}, capture_output=True, text=True, timeout=30)


def test_a_host_without_ufw_or_firewalld_starts_no_program_to_look_for_our_rules(tmp_path):
    for fact in (UFW.leftovers(), *FWD.leftovers()):
        done = traced(fact.command(), tmp_path, str(tmp_path / "no-programs"))  # a program would be "not found"
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), fact.command()
        assert fact.process(done.stdout.splitlines()) is None  # read as "nothing of ours", as before


@pytest.mark.parametrize(
    ("frontend", "path", "text", "found"),
    [
        ("ufw", "ufw/user.rules", f"### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in {OURS}", True),
        ("ufw", "ufw/user6.rules", f"### tuple ### allow tcp 22 ::/0 any ::/0 in {OURS}", True),
        ("ufw", "ufw/user.rules", "### tuple ### allow tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in", False),
        ("firewalld", "firewalld/ipsets/llamafleet-api.xml", "<ipset/>", True),
        ("firewalld", "firewalld/policies/llamafleet.xml", "<policy/>", True),
        ("firewalld", "firewalld/zones/public.xml", '<rule><source ipset="llamafleet-rpc"/></rule>', True),
        ("firewalld", "firewalld/zones/public.xml", '<rule><source ipset="other"/></rule>', False),
    ],
)
def test_a_trace_of_our_rules_is_found_in_the_frontends_files(tmp_path, frontend, path, text, found):
    (tmp_path / "etc" / path).parent.mkdir(parents=True)
    (tmp_path / "etc" / path).write_text(text + "\n")
    trace = {"ufw": UFW.TRACE, "firewalld": FWD.TRACE}[frontend]
    assert (traced(trace, tmp_path, "/usr/bin:/bin").returncode == 0) == found
