"""Role firewall with firewalld: zones, ipsets and policies parsed from real firewall-cmd output, commands planned."""

from __future__ import annotations

import pytest
from firewall_recordings import FWD, HEAD, OLD_HEAD, WORKER_RULES, F, P, plan, recorded, shell_words

from llamafleet import facts
from llamafleet.errors import OperationError
from llamafleet.operations import Facts, NoChange
from llamafleet.roles.firewall import firewalld_config as FWC

POLICY_RULES = [  # WORKER_RULES's rich rules, as the recording lab's firewalld lists them (in policy llamafleet)
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
        "policies_permanent": state,
        "policies_runtime": state,
    }
    return [f"firewalld_{fact}_{override.get(fact, s)}.txt" for fact, s in names.items()]


def test_firewalld_state_reads_running_and_default_zone():
    assert F.FirewalldState().process(recorded("firewalld_state_fresh.txt")) == F.FirewalldStatus(True, "public")
    assert F.FirewalldState().process(recorded("firewalld_state_stopped.txt")) == F.FirewalldStatus(False, "public")
    assert F.FirewalldState().process([]) is None  # no firewall-cmd on the host


def test_firewalld_zones_read_targets_services_rules_and_interfaces():
    zones = F.FirewalldZones("permanent").process(recorded("firewalld_zones_permanent_zoned.txt"))
    assert sorted(zones) == ["block", "dmz", "drop", "external", "home", "internal", "public", "trusted", "work"]
    public = zones["public"]
    assert public.target == "default" and public.services == ("dhcpv6-client", "ssh") and public.ports == ("9999/tcp",)
    assert sorted(r for r in public.rich_rules if FWC.ours(r)) == sorted(POLICY_RULES)  # where versions before put them
    assert zones["trusted"].target == "ACCEPT" and zones["block"].target == "%%REJECT%%"
    bound = F.FirewalldZones("runtime").process(recorded("firewalld_zones_runtime_bound.txt"))
    assert bound["internal"].interfaces == ("host0",)  # listed as "internal (active)"
    assert bound["public"].rich_rules and not any(FWC.ours(r) for r in bound["public"].rich_rules)  # foreign ones
    assert F.FirewalldZones("runtime").process(recorded("firewalld_zones_runtime_stopped.txt")) is None


def test_firewalld_ipsets_read_only_ours_with_type_options_and_entries():
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


def test_route_interfaces_name_the_interface_each_source_is_routed_through():
    routes = F.RouteInterfaces((HEAD,)).process(recorded("firewalld_routes_fresh.txt"))
    assert routes == {HEAD: "host0", OLD_HEAD: "host0"}  # fd00:52:: has no route in the lab: not listed


def test_firewalld_rich_rules_are_the_listed_text():
    [rule] = WORKER_RULES.rules
    assert sorted(FWC.rich_rules(rule)) == sorted(POLICY_RULES)
    dual = P.Rule(8080, ("fd00::/64", "10.0.0.0/8"), "api", proto="udp")
    assert FWC.rich_rules(dual)[-2:] == [
        'rule family="ipv6" source ipset="llamafleet-8080-udp-v6" port port="8080" protocol="udp" accept',
        'rule family="ipv6" source NOT ipset="llamafleet-8080-udp-v6" port port="8080" protocol="udp" drop',
    ]
    assert FWC.ours(POLICY_RULES[1])
    assert not FWC.ours('rule family="ipv4" source ipset="other" port port="9998" protocol="tcp" accept')


def test_firewalld_entries_never_overlap():
    # firewalld refuses (IPv4) or silently drops (IPv6) an entry that overlaps another
    assert FWC.entries(("10.1.2.3", "10.1.0.0/16", "10.2.0.1")) == ("10.1.0.0/16", "10.2.0.1")
    assert FWC.entries(("fd00::1", "fd00::/64")) == ("fd00::/64",)


POLICY_MADE = [
    ["--new-policy=llamafleet"],
    ["--policy=llamafleet", "--set-priority=-1"],
    ["--policy=llamafleet", "--add-ingress-zone=ANY"],
    ["--policy=llamafleet", "--add-egress-zone=HOST"],
]


def test_firewalld_fresh_host_creates_ipsets_and_the_policy_then_reloads():
    result = plan(FWD.rules(WORKER_RULES), *firewalld("fresh"))
    permanent = ["firewall-cmd", "--permanent"]
    assert shell_words(result) == [
        [*permanent, "--new-ipset=llamafleet-50052-tcp", "--type=hash:net"],
        [*permanent, "--new-ipset=llamafleet-50052-tcp-v6", "--type=hash:net", "--option=family=inet6"],
        [*permanent, "--ipset=llamafleet-50052-tcp", f"--add-entry={HEAD}"],
        *([*permanent, *words] for words in POLICY_MADE),
        [*permanent, "--policy=llamafleet", *(f"--add-rich-rule={r}" for r in sorted(POLICY_RULES))],
        ["firewall-cmd", "--reload"],  # firewalld creates ipsets and policies in the permanent configuration only
    ]
    assert result.reason == (
        "permanent: policy to create, 2 ipsets to create, 1 entry to add, 3 rich rules to add; "
        "runtime: policy to create, 2 ipsets to create, 1 entry to add, 3 rich rules to add (by a reload)"
    )
    assert plan(FWD.ssh_allowed(WORKER_RULES), *firewalld("fresh")) == NoChange(
        "SSH (22/tcp) allowed in zone(s) public"
    )


def test_firewalld_converged_needs_nothing():
    assert plan(FWD.rules(WORKER_RULES), *firewalld("applied")) == NoChange(
        "2 llamafleet ipset(s), 3 rich rule(s) in policy llamafleet (every zone), none stale"
    )
    assert isinstance(plan(FWD.ssh_allowed(WORKER_RULES), *firewalld("applied")), NoChange)
    running = plan(FWD.running_and_enabled(), "firewalld_unit_applied.txt", "firewalld_state_applied.txt")
    assert running == NoChange("firewalld running, firewalld.service enabled")


def test_firewalld_stale_port_and_source_removed_foreign_rules_kept():
    result = plan(FWD.rules(WORKER_RULES), *firewalld("stale"))
    stale_rules = [
        'rule family="ipv4" source NOT ipset="llamafleet-50099-tcp" port port="50099" protocol="tcp" drop',
        'rule family="ipv4" source ipset="llamafleet-50099-tcp" port port="50099" protocol="tcp" accept',
        'rule family="ipv6" source NOT ipset="llamafleet-50099-tcp-v6" port port="50099" protocol="tcp" drop',
        'rule family="ipv6" source ipset="llamafleet-50099-tcp-v6" port port="50099" protocol="tcp" accept',
    ]
    permanent = ["firewall-cmd", "--permanent"]
    assert shell_words(result) == [
        [*permanent, "--policy=llamafleet", *(f"--remove-rich-rule={r}" for r in stale_rules)],
        [*permanent, "--delete-ipset=llamafleet-50099-tcp"],  # after the rules that use it
        [*permanent, "--delete-ipset=llamafleet-50099-tcp-v6"],
        [*permanent, "--ipset=llamafleet-50052-tcp", f"--remove-entry={OLD_HEAD}"],  # before the add: no overlap
        [*permanent, "--ipset=llamafleet-50052-tcp", f"--add-entry={HEAD}"],
        ["firewall-cmd", "--reload"],
    ]
    everything = " ".join(" ".join(words) for words in shell_words(result))
    assert "9999" not in everything and "9998" not in everything and "9997" not in everything
    zones = F.FirewalldZones("permanent").process(recorded("firewalld_zones_permanent_stale.txt"))
    assert "9999/tcp" in zones["public"].ports and len(zones["public"].rich_rules) == 2  # foreign ones there


def test_firewalld_stale_source_only_changes_runtime_without_reload():
    # The stale recording, planned for a plan that still has port 50099: only entries change, in both sides.
    keep = P.Rule(50099, (HEAD, "fd00:52::/64"), "old")
    result = plan(FWD.rules(P.Ruleset((*WORKER_RULES.rules, keep))), *firewalld("stale"))
    assert shell_words(result) == [
        [*tool, f"--ipset=llamafleet-{port}-tcp", f"--{verb}-entry={address}"]
        for tool in (["firewall-cmd", "--permanent"], ["firewall-cmd"])
        for verb, address in (("remove", OLD_HEAD), ("add", HEAD))
        for port in (50052, 50099)
    ]  # fmt: skip
    assert result.reason == "permanent: 2 entries to add, 2 stale entries; runtime: 2 entries to add, 2 stale entries"


def test_firewalld_empty_plan_removes_everything_of_ours():
    result = plan(FWD.rules(P.Ruleset(())), *firewalld("applied"))
    assert shell_words(result) == [
        ["firewall-cmd", "--permanent", "--delete-policy=llamafleet"],  # its rules go with it
        ["firewall-cmd", "--permanent", "--delete-ipset=llamafleet-50052-tcp"],
        ["firewall-cmd", "--permanent", "--delete-ipset=llamafleet-50052-tcp-v6"],
        ["firewall-cmd", "--reload"],
    ]
    assert plan(FWD.rules(P.Ruleset(())), *firewalld("fresh")) == NoChange(
        "0 llamafleet ipset(s), 0 rich rule(s) in no policy, none stale"
    )


def test_firewalld_stopped_is_configured_offline_then_started():
    result = plan(FWD.rules(WORKER_RULES), *firewalld("stopped"))
    commands = shell_words(result)
    assert {words[0] for words in commands} == {"firewall-offline-cmd"}  # firewall-cmd refuses while stopped
    assert commands[0] == ["firewall-offline-cmd", "--new-ipset=llamafleet-50052-tcp", "--type=hash:net"]
    assert [["firewall-offline-cmd", *words] for words in POLICY_MADE] == commands[3:7]
    assert result.reason == "permanent: policy to create, 2 ipsets to create, 1 entry to add, 3 rich rules to add"
    start = plan(FWD.running_and_enabled(), "firewalld_unit_stopped.txt", "firewalld_state_stopped.txt")
    assert shell_words(start) == [
        ["systemctl", "enable", "firewalld.service"],
        ["systemctl", "start", "firewalld.service"],
    ]
    assert start.reason == "firewalld not running"


def test_firewalld_rules_stay_in_the_policy_whatever_zone_the_interface_is_in():
    # Recorded with host0 bound to zone internal: the rules are in the policy, SSH allowed in internal and public.
    assert isinstance(plan(FWD.rules(WORKER_RULES), *firewalld("bound")), NoChange)
    assert plan(FWD.ssh_allowed(WORKER_RULES), *firewalld("bound")) == NoChange(
        "SSH (22/tcp) allowed in zone(s) internal, public"
    )
    # Were the head routed through an interface in no zone, only the default zone would need SSH.
    facts_ = {f.key: f.process(recorded(n)) for f, n in zip(FWD.rules(WORKER_RULES).facts, firewalld("bound"))}
    facts_[F.RouteInterfaces((HEAD,)).key] = {HEAD: "eth1"}
    assert FWD.ssh_allowed(WORKER_RULES).plan(Facts(facts_)) == NoChange("SSH (22/tcp) allowed in zone(s) public")
    assert isinstance(FWD.rules(WORKER_RULES).plan(Facts(facts_)), NoChange)


def test_firewalld_ssh_port_opened_in_both_sides_first():
    result = plan(FWD.ssh_allowed(P.Ruleset((), ssh_port=2222)), *firewalld("applied"))
    assert shell_words(result) == [
        ["firewall-cmd", "--permanent", "--zone=public", "--add-port=2222/tcp"],
        ["firewall-cmd", "--zone=public", "--add-port=2222/tcp"],
    ]
    assert [op.description for op in FWD.firewalld_rules(WORKER_RULES)][0] == "firewalld SSH allowed"


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
def test_firewalld_zone_lets_ssh_in_through_its_service_port_or_target(zone, port, open_):
    assert FWD.ssh_open(zone, port) is open_


def test_firewalld_ipset_of_the_wrong_kind_is_recreated():
    lines = recorded("firewalld_ipsets_permanent_applied.txt")
    lines[2] = "  type: hash:ip"  # llamafleet-50052-tcp, made by someone else with the same name
    names = firewalld("applied")
    facts_ = {f.key: f.process(recorded(n)) for f, n in zip(FWD.rules(WORKER_RULES).facts, names)}
    facts_[F.FirewalldIpsets("permanent").key] = F.FirewalldIpsets("permanent").process(lines)
    commands = shell_words(FWD.rules(WORKER_RULES).plan(Facts(facts_)))
    assert commands == [
        ["firewall-cmd", "--permanent", "--delete-ipset=llamafleet-50052-tcp"],
        ["firewall-cmd", "--permanent", "--new-ipset=llamafleet-50052-tcp", "--type=hash:net"],
        ["firewall-cmd", "--permanent", "--ipset=llamafleet-50052-tcp", f"--add-entry={HEAD}"],
    ]  # the runtime side is already right: no reload


def test_firewalld_missing_or_masked_is_an_error():
    with pytest.raises(OperationError, match="is firewalld installed"):
        FWD.rules(WORKER_RULES).plan(Facts({F.FirewalldState().key: None}))
    masked = {facts.SystemdUnit("firewalld.service").key: {"UnitFileState": "masked"}, F.FirewalldState().key: None}
    with pytest.raises(OperationError, match="masked"):
        FWD.running_and_enabled().plan(Facts(masked))
