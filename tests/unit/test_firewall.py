"""Role firewall: facts parsed from real ufw/nftables output, and the commands planned from them."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from llamafleet import facts, roles
from llamafleet.errors import OperationError
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell, Upload

FIREWALL = roles.load("firewall")
P, F, NFT, UFW = FIREWALL._plan, FIREWALL._facts, FIREWALL._nftables, FIREWALL._ufw
RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "firewall"
HEAD, W1, W2, OLD_HEAD = "10.213.52.2", "10.213.52.3", "10.213.52.4", "10.213.52.99"  # the recording lab's
WORKER_PLAN = P.FirewallPlan((P.Rule(50052, (HEAD,), "rpc"),))
HEAD_PLAN = P.FirewallPlan((P.Rule(8080, (HEAD, W1, W2), "api"),))


def recorded(name: str) -> list[str]:
    text = (RECORDED / name).read_text()
    text = text[:-1] if text.endswith("\n") else text
    return text.split("\n") if text else []


def words(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def plan(operation: Operation, *names: str):
    """Plan `operation` with each of its facts read from one recording, in order."""
    assert len(names) == len(operation.facts)
    return operation.plan(Facts({f.key: f.process(recorded(n)) for f, n in zip(operation.facts, names)}))


def shell_words(change) -> list[list[str]]:
    assert isinstance(change, Change), change
    return [words(step.command) for step in change.steps if isinstance(step, Shell)]


# --------------------------------------------------------------------------- the plan


def test_rule_sources_are_canonical_and_sorted():
    rule = P.Rule(50052, ("10.0.0.9", "10.1.0.0/16", "10.0.0.1/32", "fd00::1/128", "10.1.2.3/16"), "rpc")
    assert rule.sources == ("10.0.0.1", "10.0.0.9", "10.1.0.0/16", "fd00::1")
    assert rule.ipv4 == ("10.0.0.1", "10.0.0.9", "10.1.0.0/16") and rule.ipv6 == ("fd00::1",)
    assert rule.tag == "llamafleet rpc"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 50052, "sources": ("head.lan",), "comment": "rpc"}, "not an IP address"),
        ({"port": 50052, "sources": (), "comment": "rpc"}, "no source"),
        ({"port": 0, "sources": (HEAD,), "comment": "rpc"}, "not a port"),
        ({"port": 50052, "sources": (HEAD,), "comment": "rpc", "proto": "icmp"}, "protocol"),
        ({"port": 50052, "sources": (HEAD,), "comment": "x'; reboot"}, "comment"),
    ],
)
def test_bad_rules_are_refused(kwargs, message):
    with pytest.raises(OperationError, match=message):
        P.Rule(**kwargs)


def test_a_rule_on_the_ssh_port_is_refused():
    with pytest.raises(OperationError, match="SSH port"):
        P.FirewallPlan((P.Rule(2222, (HEAD,), "rpc"),), ssh_port=2222)


# --------------------------------------------------------------------------- which frontend


@pytest.mark.parametrize(
    ("name", "frontends"),
    [
        ("frontends_ufw_fresh.txt", F.Frontends(frozenset({"ufw"}))),
        ("frontends_ufw_applied.txt", F.Frontends(frozenset({"ufw"}), ufw_active=True)),
        ("frontends_firewalld_fresh.txt", F.Frontends(frozenset({"firewalld"}), firewalld_running=True)),
        ("frontends_nftables_fresh.txt", F.Frontends(frozenset({"nftables"}))),
        ("frontends_nftables_applied.txt", F.Frontends(frozenset({"nftables"}), nftables_enabled=True)),
    ],
)
def test_frontends_parsed(name, frontends):
    assert F.FirewallFrontends().process(recorded(name)) == frontends


@pytest.mark.parametrize(
    ("name", "choice"),
    [
        ("frontends_ufw_applied.txt", "ufw"),
        ("frontends_ufw_fresh.txt", "nftables"),  # installed but inactive: not in charge
        ("frontends_firewalld_fresh.txt", "firewalld"),
        ("frontends_nftables_fresh.txt", "nftables"),
    ],
)
def test_auto_picks_the_frontend_in_charge(name, choice):
    assert FIREWALL.choose_frontend("auto", F.FirewallFrontends().process(recorded(name))) == choice


def test_auto_prefers_ufw_then_firewalld():
    both = F.Frontends(frozenset({"ufw", "firewalld", "nftables"}), ufw_active=True, firewalld_running=True)
    assert FIREWALL.choose_frontend("auto", both) == "ufw"
    assert FIREWALL.choose_frontend("auto", F.Frontends(frozenset())) == "nftables"
    assert FIREWALL.choose_frontend("none", both) is None


def test_an_unknown_frontend_is_refused():
    with pytest.raises(OperationError, match="'iptables' is not one of"):
        FIREWALL.choose_frontend("iptables", F.Frontends(frozenset()))
    with pytest.raises(OperationError, match="no operations"):
        FIREWALL.frontend_operations("iptables", WORKER_PLAN)


# --------------------------------------------------------------------------- nftables


def test_nft_table_absent():
    assert F.NftTable().process(recorded("nft_table_fresh.txt")) is None


def test_nft_table_parsed():
    state = F.NftTable().process(recorded("nft_table_applied.txt"))
    assert state.chains == (("input", "input", 0, "accept"),)
    assert state.rules == (
        F.NftRule("tcp", 22, None, (), "accept", "llamafleet ssh"),
        F.NftRule("tcp", 50052, "ip", (HEAD,), "accept", "llamafleet rpc"),
        F.NftRule("tcp", 50052, None, (), "drop", "llamafleet rpc"),
    )


def test_nft_sets_and_prefixes_parsed():
    rule = {
        "comment": "llamafleet api",
        "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"set": [{"prefix": {"addr": "10.1.0.0", "len": 16}}, "10.2.3.4"]},
                }
            },
            {"accept": None},
        ],
    }
    assert F._nft_rule(rule) == F.NftRule("tcp", 8080, "ip", ("10.1.0.0/16", "10.2.3.4"), "accept", "llamafleet api")


def test_rendered_table_is_what_the_host_saved():
    text = "\n".join(recorded("nft_table_file_applied.txt")[1:]) + "\n"
    assert NFT.render_table(WORKER_PLAN) == text
    assert text.startswith("# Managed by llamafleet")
    assert "table inet llamafleet\ndelete table inet llamafleet\n" in text


def test_rendered_table_splits_ipv4_and_ipv6():
    text = NFT.render_table(P.FirewallPlan((P.Rule(8080, ("fd00::/64", "10.0.0.0/8"), "api"),), ssh_port=2222))
    lines = [line.strip() for line in text.splitlines() if "dport" in line]
    assert lines == [
        'tcp dport 2222 accept comment "llamafleet ssh"',
        'tcp dport 8080 ip saddr { 10.0.0.0/8 } accept comment "llamafleet api"',
        'tcp dport 8080 ip6 saddr { fd00::/64 } accept comment "llamafleet api"',
        'tcp dport 8080 drop comment "llamafleet api"',
    ]


def test_nftables_fresh_host_gets_file_then_load():
    result = plan(NFT.table(WORKER_PLAN), "nft_table_file_fresh.txt", "nft_table_fresh.txt")
    assert result.reason == "table file missing"
    upload, load = result.steps
    assert isinstance(upload, Upload) and upload.path == "/etc/nftables.d/llamafleet.nft"
    assert upload.content.decode() == NFT.render_table(WORKER_PLAN)
    assert words(load.command) == ["nft", "-f", "/etc/nftables.d/llamafleet.nft"]


def test_nftables_converged_is_no_change():
    result = plan(NFT.table(WORKER_PLAN), "nft_table_file_applied.txt", "nft_table_applied.txt")
    assert result == NoChange("table inet llamafleet loaded and saved, 1 guarded port(s)")
    assert isinstance(plan(NFT.loaded_at_boot(), "nftables_conf_applied.txt"), NoChange)
    assert plan(NFT.service_enabled(), "nftables_unit_applied.txt") == NoChange("nftables.service enabled")


def test_nftables_stale_source_goes_by_replacing_the_table():
    result = plan(NFT.table(WORKER_PLAN), "nft_table_file_stale.txt", "nft_table_stale.txt")
    assert result.reason == "table file differs"
    assert OLD_HEAD in "\n".join(recorded("nft_table_file_stale.txt"))
    assert OLD_HEAD not in result.steps[0].content.decode()
    assert words(result.steps[1].command) == ["nft", "-f", "/etc/nftables.d/llamafleet.nft"]


def test_nftables_table_changed_in_the_kernel_only_is_reloaded():
    # The file is current but the kernel still holds the old head's table (someone ran nft by hand).
    result = plan(NFT.table(WORKER_PLAN), "nft_table_file_applied.txt", "nft_table_stale.txt")
    assert result.reason == "table inet llamafleet in the kernel differs from its file"
    assert shell_words(result) == [["nft", "-f", "/etc/nftables.d/llamafleet.nft"]]
    missing = plan(NFT.table(WORKER_PLAN), "nft_table_file_applied.txt", "nft_table_fresh.txt")
    assert missing.reason == "table inet llamafleet not loaded"


def test_nftables_conf_gets_the_include_appended():
    result = plan(NFT.loaded_at_boot(), "nftables_conf_fresh.txt")
    [command] = shell_words(result)
    assert command[-2:] == [">>", "/etc/nftables.conf"]
    assert 'include "/etc/nftables.d/llamafleet.nft"' in command


@pytest.mark.parametrize(
    ("conf", "found"),
    [
        ('include "/etc/nftables.d/llamafleet.nft"', True),
        ('  include "/etc/nftables.d/*.nft"', True),
        ('include "/etc/nftables.d/*.conf"', False),
        ('# include "/etc/nftables.d/llamafleet.nft"', False),
        (None, False),
    ],
)
def test_nftables_include_detection(conf, found):
    assert NFT.includes(conf) is found


def test_nftables_service_enabled_not_started():
    result = plan(NFT.service_enabled(), "nftables_unit_fresh.txt")
    assert shell_words(result) == [["systemctl", "enable", "nftables.service"]]
    assert facts.SystemdUnit("nftables.service").key == NFT.service_enabled().facts[0].key


# --------------------------------------------------------------------------- ufw


def test_ufw_status_parsed():
    fresh = F.UfwStatus().process(recorded("ufw_status_fresh.txt"))
    assert fresh == F.UfwState(False, None, (), True)
    applied = F.UfwStatus().process(recorded("ufw_status_applied.txt"))
    assert applied.active and applied.default_incoming == "deny"
    assert ("allow", "22/tcp", "comment", "llamafleet ssh") in applied.rules
    assert ("deny", "8080/tcp", "comment", "llamafleet api") in applied.rules
    assert F.UfwStatus().process([]) is None


def test_ufw_fresh_host_allows_ssh_first():
    result = plan(UFW.rules(HEAD_PLAN), "ufw_status_fresh.txt")
    assert shell_words(result) == [
        ["ufw", "allow", "22/tcp", "comment", "llamafleet ssh"],
        *[
            [
                "ufw",
                "prepend",
                "allow",
                "from",
                a,
                "to",
                "any",
                "port",
                "8080",
                "proto",
                "tcp",
                "comment",
                "llamafleet api",
            ]
            for a in (HEAD, W1, W2)
        ],
        ["ufw", "deny", "8080/tcp", "comment", "llamafleet api"],
    ]
    assert result.reason == "5 missing"
    enable = plan(UFW.enabled(), "ufw_status_fresh.txt")
    assert shell_words(enable) == [["ufw", "--force", "enable"]]


def test_ufw_converged_is_no_change():
    assert plan(UFW.rules(HEAD_PLAN), "ufw_status_applied.txt") == NoChange("5 llamafleet rule(s) present, none stale")
    assert plan(UFW.enabled(), "ufw_status_applied.txt") == NoChange("ufw active, ufw.service enabled")


def test_ufw_stale_source_deleted_and_foreign_rule_kept():
    result = plan(UFW.rules(HEAD_PLAN), "ufw_status_stale.txt")
    assert shell_words(result) == [
        ["ufw", "delete", "allow", "from", OLD_HEAD, "to", "any", "port", "8080", "proto", "tcp"],
        [
            "ufw",
            "prepend",
            "allow",
            "from",
            HEAD,
            "to",
            "any",
            "port",
            "8080",
            "proto",
            "tcp",
            "comment",
            "llamafleet api",
        ],
    ]
    assert result.reason == "1 missing, 1 stale"
    assert ("allow", "9999/tcp") in F.UfwStatus().process(recorded("ufw_status_stale.txt")).rules


def test_ufw_missing_is_an_error():
    with pytest.raises(OperationError, match="ufw status"):
        UFW.rules(HEAD_PLAN).plan(Facts({F.UfwStatus().key: None}))


# --------------------------------------------------------------------------- the role


class _Runner:
    def __init__(self, shared, frontends=None):
        self.shared = shared
        self.frontends = frontends

    def gather(self, host, wanted):
        return Facts({wanted[0].key: self.frontends})


class _Host:
    name = "w2"
    vars: dict


def _ctx(choice, shared, frontends=None):
    host = _Host()
    host.vars = {"firewall": choice}
    return roles.HostContext(host, {"family": "debian"}, _Runner(shared, frontends), "firewall", Path("."))


def test_role_none_does_nothing():
    assert list(FIREWALL.operations(_ctx("none", {}))) == []


def test_role_nftables_operations_in_order():
    ops = list(FIREWALL.operations(_ctx("nftables", {"firewall": {"w2": WORKER_PLAN}})))
    assert [op.description for op in ops] == [
        "packages nftables",
        "directory /etc/nftables.d",
        "nftables table inet llamafleet (/etc/nftables.d/llamafleet.nft)",
        "/etc/nftables.conf includes /etc/nftables.d/llamafleet.nft",
        "service nftables.service enabled",
    ]


def test_role_auto_reads_the_frontends():
    active_ufw = F.FirewallFrontends().process(recorded("frontends_ufw_applied.txt"))
    ops = list(FIREWALL.operations(_ctx("auto", {}, active_ufw)))
    assert [op.description for op in ops] == ["packages ufw", "ufw llamafleet rules", "ufw active and enabled"]
