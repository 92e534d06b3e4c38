"""Role firewall: which frontend is in charge of a host, and the operations the role yields for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from firewall_recordings import FIREWALL, WORKER_RULES, F, recorded

from llamafleet.errors import OperationError
from llamafleet.operations import Facts
from llamafleet.run import Handoffs, HostContext


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
def test_frontends_read_what_is_installed_and_in_charge(name, frontends):
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
        FIREWALL.frontend_operations("iptables", WORKER_RULES)


class _Run:
    """The part of a run the role's operations use: its hand-offs and the frontends fact."""

    def __init__(self, plans, frontends=None):
        self.handoff = Handoffs(FIREWALL.Rulesets(plans))
        self.frontends = frontends

    def gather(self, host, wanted):
        return Facts({wanted[0].key: self.frontends})


class _Host:
    name = "w2"
    vars: dict


def _ctx(choice, plans, frontends=None):
    host = _Host()
    host.vars = {"firewall": choice}
    return HostContext(host, {"family": "debian"}, _Run(plans, frontends), "firewall", Path("."))


def test_role_with_firewall_none_only_looks():
    [op] = list(FIREWALL.operations(_ctx("none", {})))
    assert op.description == "firewall left alone"


def test_role_with_nftables_manages_it_and_clears_the_others():
    ops = list(FIREWALL.operations(_ctx("nftables", {"w2": WORKER_RULES})))
    assert [op.description for op in ops] == [
        "no firewall frontend in charge but nftables",
        "packages nftables",
        "directory /etc/nftables.d",
        "nftables table inet llamafleet (/etc/nftables.d/llamafleet.nft)",
        "/etc/nftables.conf includes /etc/nftables.d/llamafleet.nft",
        "service nftables.service enabled",
        "ufw holds no llamafleet rule",
        "firewalld holds no llamafleet ipset, policy or rich rule",
    ]


def test_role_with_auto_manages_the_frontend_in_charge():
    active_ufw = F.FirewallFrontends().process(recorded("frontends_ufw_applied.txt"))
    ops = list(FIREWALL.operations(_ctx("auto", {}, active_ufw)))
    assert [op.description for op in ops] == [
        "no firewall frontend in charge but ufw",
        "packages ufw",
        "ufw llamafleet rules",
        "ufw active and enabled",
        "firewalld holds no llamafleet ipset, policy or rich rule",
        "nftables holds no llamafleet table",
    ]


def test_role_with_firewalld_manages_it_and_clears_the_others():
    ops = list(FIREWALL.operations(_ctx("firewalld", {"w2": WORKER_RULES})))
    assert [op.description for op in ops] == [
        "no firewall frontend in charge but firewalld",
        "packages firewalld",
        "firewalld SSH allowed",
        "firewalld llamafleet policy, ipsets and rich rules",
        "firewalld running and enabled",
        "ufw holds no llamafleet rule",
        "nftables holds no llamafleet table",
    ]
    running = F.FirewallFrontends().process(recorded("frontends_firewalld_fresh.txt"))
    assert [op.description for op in FIREWALL.operations(_ctx("auto", {}, running))][1] == "packages firewalld"
