"""Role firewall: facts parsed from real ufw/nftables output, and the commands planned from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from recordings import recorded_lines, words

from llamafleet import facts
from llamafleet.errors import OperationError
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell, Upload
from llamafleet.roles.firewall import role as FIREWALL
from llamafleet.run import Handoffs, HostContext

P, F, NFT, UFW = FIREWALL._plan, FIREWALL._facts, FIREWALL._nftables, FIREWALL._ufw
RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "firewall"
HEAD, W1, W2, OLD_HEAD = "10.213.52.2", "10.213.52.3", "10.213.52.4", "10.213.52.99"  # the recording lab's
WORKER_PLAN = P.FirewallPlan((P.Rule(50052, (HEAD,), "rpc"),))
HEAD_PLAN = P.FirewallPlan((P.Rule(8080, (HEAD, W1, W2), "api"),))


def recorded(name: str) -> list[str]:
    return recorded_lines(RECORDED / name)


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


class _Run:
    """The part of a run the role's operations use: its hand-offs and the frontends fact."""

    def __init__(self, plans, frontends=None):
        self.handoff = Handoffs(FIREWALL.Plans(plans))
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


def test_role_none_only_looks():
    [op] = list(FIREWALL.operations(_ctx("none", {})))
    assert op.description == "firewall left alone"


def test_role_nftables_operations_in_order():
    ops = list(FIREWALL.operations(_ctx("nftables", {"w2": WORKER_PLAN})))
    assert [op.description for op in ops] == [
        "no firewall frontend in charge but nftables",
        "packages nftables",
        "directory /etc/nftables.d",
        "nftables table inet llamafleet (/etc/nftables.d/llamafleet.nft)",
        "/etc/nftables.conf includes /etc/nftables.d/llamafleet.nft",
        "service nftables.service enabled",
        "ufw holds no llamafleet rule",
        "firewalld holds no llamafleet ipset or rich rule",
    ]


def test_role_auto_reads_the_frontends():
    active_ufw = F.FirewallFrontends().process(recorded("frontends_ufw_applied.txt"))
    ops = list(FIREWALL.operations(_ctx("auto", {}, active_ufw)))
    assert [op.description for op in ops] == [
        "no firewall frontend in charge but ufw",
        "packages ufw",
        "ufw llamafleet rules",
        "ufw active and enabled",
        "firewalld holds no llamafleet ipset or rich rule",
        "nftables holds no llamafleet table",
    ]


# --------------------------------------------------------------------------- firewalld

FWD = FIREWALL._firewalld
PUBLIC_RULES = [  # WORKER_PLAN's rich rules, as the recording lab's firewalld lists them
    'rule family="ipv4" source ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" accept',
    'rule family="ipv4" source NOT ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" drop',
    'rule family="ipv6" source NOT ipset="llamafleet-50052-tcp-v6" port port="50052" protocol="tcp" drop',
]


def firewalld(state: str, **override: str) -> list[str]:
    """The recordings of one state, in the order FirewalldFacts.all() lists the facts (override by fact)."""
    names = {
        "state": state,
        "zones_permanent": state,
        "zones_runtime": state,
        "ipsets_permanent": state,
        "ipsets_runtime": state,
        "routes": state,
    }
    return [f"firewalld_{fact}_{override.get(fact, s)}.txt" for fact, s in names.items()]


def test_firewalld_state_parsed():
    assert F.FirewalldState().process(recorded("firewalld_state_fresh.txt")) == F.FirewalldStatus(True, "public")
    assert F.FirewalldState().process(recorded("firewalld_state_stopped.txt")) == F.FirewalldStatus(False, "public")
    assert F.FirewalldState().process([]) is None  # no firewall-cmd on the host


def test_firewalld_zones_parsed():
    zones = F.FirewalldZones("permanent").process(recorded("firewalld_zones_permanent_applied.txt"))
    assert sorted(zones) == ["block", "dmz", "drop", "external", "home", "internal", "public", "trusted", "work"]
    public = zones["public"]
    assert public.target == "default" and public.services == ("dhcpv6-client", "ssh") and public.ports == ()
    assert sorted(public.rich_rules) == sorted(PUBLIC_RULES)
    assert zones["trusted"].target == "ACCEPT" and zones["block"].target == "%%REJECT%%"
    bound = F.FirewalldZones("runtime").process(recorded("firewalld_zones_runtime_bound.txt"))
    assert bound["internal"].interfaces == ("host0",)  # listed as "internal (active)"
    assert bound["public"].rich_rules and not any(FWD.ours(r) for r in bound["public"].rich_rules)  # foreign ones
    assert F.FirewalldZones("runtime").process(recorded("firewalld_zones_runtime_stopped.txt")) is None


def test_firewalld_ipsets_parsed():
    stale = F.FirewalldIpsets("permanent").process(recorded("firewalld_ipsets_permanent_stale.txt"))
    assert sorted(stale) == [
        "llamafleet-50052-tcp",
        "llamafleet-50052-tcp-v6",
        "llamafleet-50099-tcp",
        "llamafleet-50099-tcp-v6",
    ]  # the foreign ipset `other` is not read
    assert stale["llamafleet-50052-tcp"] == F.FirewalldIpset("hash:net", (), (OLD_HEAD,))
    assert stale["llamafleet-50099-tcp-v6"] == F.FirewalldIpset("hash:net", ("family=inet6",), ("fd00:52::/64",))
    assert F.FirewalldIpsets("permanent").process(recorded("firewalld_ipsets_permanent_fresh.txt")) == {}
    assert F.FirewalldIpsets("runtime").process(recorded("firewalld_ipsets_runtime_stopped.txt")) is None


def test_route_interfaces_parsed():
    routes = F.RouteInterfaces((HEAD,)).process(recorded("firewalld_routes_fresh.txt"))
    assert routes == {HEAD: "host0", OLD_HEAD: "host0"}  # fd00:52:: has no route in the lab: not listed


def test_firewalld_rich_rules_are_the_listed_text():
    [rule] = WORKER_PLAN.rules
    assert sorted(FWD.rich_rules(rule)) == sorted(PUBLIC_RULES)
    dual = P.Rule(8080, ("fd00::/64", "10.0.0.0/8"), "api", proto="udp")
    assert FWD.rich_rules(dual)[-2:] == [
        'rule family="ipv6" source ipset="llamafleet-8080-udp-v6" port port="8080" protocol="udp" accept',
        'rule family="ipv6" source NOT ipset="llamafleet-8080-udp-v6" port port="8080" protocol="udp" drop',
    ]
    assert FWD.ours(PUBLIC_RULES[1])
    assert not FWD.ours('rule family="ipv4" source ipset="other" port port="9998" protocol="tcp" accept')


def test_firewalld_entries_never_overlap():
    # firewalld refuses (IPv4) or silently drops (IPv6) an entry that overlaps another
    assert FWD.entries(("10.1.2.3", "10.1.0.0/16", "10.2.0.1")) == ("10.1.0.0/16", "10.2.0.1")
    assert FWD.entries(("fd00::1", "fd00::/64")) == ("fd00::/64",)


def test_firewalld_fresh_host_creates_ipsets_then_reloads():
    result = plan(FWD.rules(WORKER_PLAN), *firewalld("fresh"))
    assert shell_words(result) == [
        ["firewall-cmd", "--permanent", "--new-ipset=llamafleet-50052-tcp", "--type=hash:net"],
        [
            "firewall-cmd",
            "--permanent",
            "--new-ipset=llamafleet-50052-tcp-v6",
            "--type=hash:net",
            "--option=family=inet6",
        ],
        ["firewall-cmd", "--permanent", "--ipset=llamafleet-50052-tcp", f"--add-entry={HEAD}"],
        ["firewall-cmd", "--permanent", "--zone=public", *(f"--add-rich-rule={r}" for r in sorted(PUBLIC_RULES))],
        ["firewall-cmd", "--reload"],  # firewalld creates ipsets in the permanent configuration only
    ]
    assert result.reason == (
        "permanent: 2 ipsets to create, 1 entry to add, 3 rich rules to add; "
        "runtime: 2 ipsets to create, 1 entry to add, 3 rich rules to add (by a reload)"
    )
    assert plan(FWD.ssh_allowed(WORKER_PLAN), *firewalld("fresh")) == NoChange("SSH (22/tcp) allowed in zone(s) public")


def test_firewalld_converged_is_no_change():
    assert plan(FWD.rules(WORKER_PLAN), *firewalld("applied")) == NoChange(
        "2 llamafleet ipset(s), 3 rich rule(s), none stale"
    )
    assert isinstance(plan(FWD.ssh_allowed(WORKER_PLAN), *firewalld("applied")), NoChange)
    running = plan(FWD.running_and_enabled(), "firewalld_unit_applied.txt", "firewalld_state_applied.txt")
    assert running == NoChange("firewalld running, firewalld.service enabled")


def test_firewalld_stale_port_and_source_removed_foreign_rules_kept():
    result = plan(FWD.rules(WORKER_PLAN), *firewalld("stale"))
    stale_rules = [
        'rule family="ipv4" source NOT ipset="llamafleet-50099-tcp" port port="50099" protocol="tcp" drop',
        'rule family="ipv4" source ipset="llamafleet-50099-tcp" port port="50099" protocol="tcp" accept',
        'rule family="ipv6" source NOT ipset="llamafleet-50099-tcp-v6" port port="50099" protocol="tcp" drop',
        'rule family="ipv6" source ipset="llamafleet-50099-tcp-v6" port port="50099" protocol="tcp" accept',
    ]
    permanent = ["firewall-cmd", "--permanent"]
    assert shell_words(result) == [
        [*permanent, "--zone=public", *(f"--remove-rich-rule={r}" for r in stale_rules)],
        [*permanent, "--delete-ipset=llamafleet-50099-tcp"],  # after the rules that use it
        [*permanent, "--delete-ipset=llamafleet-50099-tcp-v6"],
        [*permanent, "--ipset=llamafleet-50052-tcp", f"--remove-entry={OLD_HEAD}"],  # before the add: no overlap
        [*permanent, "--ipset=llamafleet-50052-tcp", f"--add-entry={HEAD}"],
        ["firewall-cmd", "--reload"],
    ]
    everything = " ".join(" ".join(words) for words in shell_words(result))
    assert "9999" not in everything and "9998" not in everything and "9997" not in everything
    zones = F.FirewalldZones("permanent").process(recorded("firewalld_zones_permanent_stale.txt"))
    assert "9999/tcp" in zones["public"].ports and len(zones["public"].rich_rules) == 9  # foreign ones there


def test_firewalld_stale_source_only_changes_runtime_without_reload():
    # The stale recording, planned for a plan that still has port 50099: only entries change, in both sides.
    keep = P.Rule(50099, (HEAD, "fd00:52::/64"), "old")
    result = plan(FWD.rules(P.FirewallPlan((*WORKER_PLAN.rules, keep))), *firewalld("stale"))
    assert shell_words(result) == [
        [*tool, f"--ipset=llamafleet-{port}-tcp", f"--{verb}-entry={address}"]
        for tool in (["firewall-cmd", "--permanent"], ["firewall-cmd"])
        for verb, address in (("remove", OLD_HEAD), ("add", HEAD))
        for port in (50052, 50099)
    ]  # fmt: skip
    assert result.reason == "permanent: 2 entries to add, 2 stale entries; runtime: 2 entries to add, 2 stale entries"


def test_firewalld_empty_plan_removes_everything_of_ours():
    result = plan(FWD.rules(P.FirewallPlan(())), *firewalld("applied"))
    assert shell_words(result) == [
        ["firewall-cmd", "--permanent", "--zone=public", *(f"--remove-rich-rule={r}" for r in sorted(PUBLIC_RULES))],
        ["firewall-cmd", "--permanent", "--delete-ipset=llamafleet-50052-tcp"],
        ["firewall-cmd", "--permanent", "--delete-ipset=llamafleet-50052-tcp-v6"],
        ["firewall-cmd", "--reload"],
    ]


def test_firewalld_stopped_is_configured_offline_then_started():
    result = plan(FWD.rules(WORKER_PLAN), *firewalld("stopped"))
    commands = shell_words(result)
    assert {words[0] for words in commands} == {"firewall-offline-cmd"}  # firewall-cmd refuses while stopped
    assert commands[0] == ["firewall-offline-cmd", "--new-ipset=llamafleet-50052-tcp", "--type=hash:net"]
    assert result.reason == "permanent: 2 ipsets to create, 1 entry to add, 3 rich rules to add"  # no runtime side
    start = plan(FWD.running_and_enabled(), "firewalld_unit_stopped.txt", "firewalld_state_stopped.txt")
    assert shell_words(start) == [
        ["systemctl", "enable", "firewalld.service"],
        ["systemctl", "start", "firewalld.service"],
    ]
    assert start.reason == "firewalld not running"


def test_firewalld_rules_follow_the_zone_of_the_interface():
    # Recorded with host0 bound to zone internal: the rules are there, none in public.
    assert isinstance(plan(FWD.rules(WORKER_PLAN), *firewalld("bound")), NoChange)
    # Were the sources routed through an interface in no zone, the rules would move to the default zone.
    facts_ = {f.key: f.process(recorded(n)) for f, n in zip(FWD.rules(WORKER_PLAN).facts, firewalld("bound"))}
    facts_[F.RouteInterfaces((HEAD,)).key] = {HEAD: "eth1"}
    result = FWD.rules(WORKER_PLAN).plan(Facts(facts_))
    for tool in (["firewall-cmd", "--permanent"], ["firewall-cmd"]):
        assert [*tool, "--zone=internal", *(f"--remove-rich-rule={r}" for r in sorted(PUBLIC_RULES))] in (
            shell_words(result)
        )
        assert [*tool, "--zone=public", *(f"--add-rich-rule={r}" for r in sorted(PUBLIC_RULES))] in shell_words(result)


def test_firewalld_ssh_port_opened_in_both_sides_first():
    result = plan(FWD.ssh_allowed(P.FirewallPlan((), ssh_port=2222)), *firewalld("applied"))
    assert shell_words(result) == [
        ["firewall-cmd", "--permanent", "--zone=public", "--add-port=2222/tcp"],
        ["firewall-cmd", "--zone=public", "--add-port=2222/tcp"],
    ]
    assert [op.description for op in FWD.firewalld_rules(WORKER_PLAN)][0] == "firewalld SSH allowed"


@pytest.mark.parametrize(
    ("zone", "port", "open_"),
    [
        (F.FirewalldZone("default", services=("ssh",)), 22, True),
        (F.FirewalldZone("default", services=("ssh",)), 2222, False),  # the ssh service is port 22
        (F.FirewalldZone("default", ports=("2222/tcp",)), 2222, True),
        (F.FirewalldZone("ACCEPT"), 2222, True),
        (F.FirewalldZone("%%REJECT%%", services=("http",)), 22, False),
    ],
)
def test_firewalld_ssh_open(zone, port, open_):
    assert FWD.ssh_open(zone, port) is open_


def test_firewalld_ipset_of_the_wrong_kind_is_recreated():
    lines = recorded("firewalld_ipsets_permanent_applied.txt")
    lines[2] = "  type: hash:ip"  # llamafleet-50052-tcp, made by someone else with the same name
    names = firewalld("applied")
    facts_ = {f.key: f.process(recorded(n)) for f, n in zip(FWD.rules(WORKER_PLAN).facts, names)}
    facts_[F.FirewalldIpsets("permanent").key] = F.FirewalldIpsets("permanent").process(lines)
    commands = shell_words(FWD.rules(WORKER_PLAN).plan(Facts(facts_)))
    assert commands == [
        ["firewall-cmd", "--permanent", "--delete-ipset=llamafleet-50052-tcp"],
        ["firewall-cmd", "--permanent", "--new-ipset=llamafleet-50052-tcp", "--type=hash:net"],
        ["firewall-cmd", "--permanent", "--ipset=llamafleet-50052-tcp", f"--add-entry={HEAD}"],
    ]  # the runtime side is already right: no reload


def test_firewalld_missing_or_masked_is_an_error():
    with pytest.raises(OperationError, match="is firewalld installed"):
        FWD.rules(WORKER_PLAN).plan(Facts({F.FirewalldState().key: None}))
    masked = {facts.SystemdUnit("firewalld.service").key: {"UnitFileState": "masked"}, F.FirewalldState().key: None}
    with pytest.raises(OperationError, match="masked"):
        FWD.running_and_enabled().plan(Facts(masked))


def test_role_firewalld_operations_in_order():
    ops = list(FIREWALL.operations(_ctx("firewalld", {"w2": WORKER_PLAN})))
    assert [op.description for op in ops] == [
        "no firewall frontend in charge but firewalld",
        "packages firewalld",
        "firewalld SSH allowed",
        "firewalld llamafleet ipsets and rich rules",
        "firewalld running and enabled",
        "ufw holds no llamafleet rule",
        "nftables holds no llamafleet table",
    ]
    running = F.FirewallFrontends().process(recorded("frontends_firewalld_fresh.txt"))
    assert [op.description for op in FIREWALL.operations(_ctx("auto", {}, running))][1] == "packages firewalld"
