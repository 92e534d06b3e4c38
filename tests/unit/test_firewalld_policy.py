"""Role firewall with firewalld: the closed ports are closed in every zone, through llamafleet's policy (ingress
ANY, egress HOST), planned from real firewall-cmd output (see tests/fixtures/recorded/README.md)."""

from __future__ import annotations

import pytest
from firewall_recordings import HEAD, WORKER_RULES, F, P, plan, recorded, shell_words

from llamafleet.errors import OperationError
from llamafleet.operations import Facts, NoChange
from llamafleet.roles.firewall import firewalld as FWD
from llamafleet.roles.firewall import firewalld_config as FWC

DROPS = [  # what keeps everyone but the head out of 50052, in every zone
    'rule family="ipv4" source NOT ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" drop',
    'rule family="ipv6" source NOT ipset="llamafleet-50052-tcp-v6" port port="50052" protocol="tcp" drop',
]
ACCEPT = 'rule family="ipv4" source ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" accept'
# The recordings of one state, in the order FirewalldFacts.all() lists the facts.
STEMS = (
    "state",
    "zones_permanent",
    "zones_runtime",
    "ipsets_permanent",
    "ipsets_runtime",
    "routes",
    "policies_permanent",
    "policies_runtime",
)


def recordings(state: str) -> dict[str, list[str]]:
    """fact stem -> recorded lines of one state."""
    return {stem: recorded(f"firewalld_{stem}_{state}.txt") for stem in STEMS}


def planned(operation, lines: dict[str, list[str]]):
    """Plan `operation` from recorded lines (as recordings() gives them, some edited by the test)."""
    values = {fact.key: fact.process(lines[stem]) for fact, stem in zip(operation.facts, STEMS, strict=True)}
    return operation.plan(Facts(values))


def edited(lines: list[str], old: str, new: str | None) -> list[str]:
    """Policy listing lines with the line of policy llamafleet equal to `old` (stripped) replaced by `new`
    (same indent), or removed when `new` is None."""
    start = lines.index("llamafleet (active)")
    at = next(index for index, line in enumerate(lines) if index > start and line.strip() == old)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    return lines[:at] + ([indent + new] if new is not None else []) + lines[at + 1 :]


def test_policies_read_priority_zones_rules_and_other_settings():
    policies = F.FirewalldPolicies("permanent").process(recorded("firewalld_policies_permanent_applied.txt"))
    assert sorted(policies) == ["allow-host-ipv6", "llamafleet"]
    ours = policies["llamafleet"]
    assert (ours.priority, ours.target, ours.ingress, ours.egress, ours.others) == (
        -1,
        "CONTINUE",
        ("ANY",),
        ("HOST",),
        (),
    )
    assert sorted(ours.rich_rules) == sorted([*DROPS, ACCEPT]) and FWC.as_made(ours)
    assert policies["allow-host-ipv6"].priority == -15000  # firewalld's own, left alone
    fresh = F.FirewalldPolicies("runtime").process(recorded("firewalld_policies_runtime_fresh.txt"))
    assert list(fresh) == ["allow-host-ipv6"]
    assert F.FirewalldPolicies("runtime").process(recorded("firewalld_policies_runtime_stopped.txt")) is None


def test_an_accepting_zone_on_a_second_interface_is_covered_by_the_policy():
    # Recorded converged, with eth1 bound to zone trusted (target ACCEPT): nothing to change, since the
    # policy takes every zone's traffic before the zone's own rules.
    lines = recordings("trusted")
    trusted = F.FirewalldZones("runtime").process(lines["zones_runtime"])["trusted"]
    assert trusted.interfaces == ("eth1",) and trusted.target == "ACCEPT"
    assert isinstance(planned(FWD.rules(WORKER_RULES), lines), NoChange)
    policy = F.FirewalldPolicies("runtime").process(lines["policies_runtime"])["llamafleet"]
    assert policy.ingress == ("ANY",) and set(DROPS) <= set(policy.rich_rules)
    assert not any(FWC.ours(rule) for zone in F.FirewalldZones("runtime").process(lines["zones_runtime"]).values()
                   for rule in zone.rich_rules)  # fmt: skip


def test_rules_in_a_zone_as_versions_before_left_them_move_into_the_policy():
    result = plan(FWD.rules(WORKER_RULES), *(f"firewalld_{stem}_zoned.txt" for stem in STEMS))
    commands = shell_words(result)
    permanent = ["firewall-cmd", "--permanent"]
    assert commands[0][:3] == [*permanent, "--zone=public"]
    assert sorted(commands[0][3:]) == sorted(f"--remove-rich-rule={r}" for r in [*DROPS, ACCEPT])  # not the 2 others
    assert commands[1:] == [
        [*permanent, "--new-policy=llamafleet"],
        [*permanent, "--policy=llamafleet", "--set-priority=-1"],
        [*permanent, "--policy=llamafleet", "--add-ingress-zone=ANY"],
        [*permanent, "--policy=llamafleet", "--add-egress-zone=HOST"],
        [*permanent, "--policy=llamafleet", *(f"--add-rich-rule={r}" for r in sorted([*DROPS, ACCEPT]))],
        ["firewall-cmd", "--reload"],  # one switch from the zone's rules to the policy's
    ]
    assert result.reason.startswith("permanent: policy to create, 3 rich rules to add, 3 stale rich rules; runtime:")


def test_a_drop_removed_by_hand_is_put_back_at_runtime_without_a_reload():
    lines = recordings("applied")
    lines["policies_runtime"] = edited(lines["policies_runtime"], DROPS[0], None)
    result = planned(FWD.rules(WORKER_RULES), lines)
    assert shell_words(result) == [["firewall-cmd", "--policy=llamafleet", f"--add-rich-rule={DROPS[0]}"]]
    assert result.reason == "runtime: 1 rich rule to add"


def test_a_rule_added_to_the_policy_by_hand_goes():
    lines = recordings("applied")
    opened = 'rule family="ipv4" port port="50052" protocol="tcp" accept'
    lines["policies_permanent"].insert(lines["policies_permanent"].index("\t" + ACCEPT) + 1, "\t" + opened)
    result = planned(FWD.rules(WORKER_RULES), lines)
    assert shell_words(result) == [
        ["firewall-cmd", "--permanent", "--policy=llamafleet", f"--remove-rich-rule={opened}"]
    ]


@pytest.mark.parametrize(
    ("side", "old", "new"),
    [
        ("policies_runtime", "ingress-zones: ANY", "ingress-zones: public"),  # the other zones open again
        ("policies_runtime", "priority: -1", "priority: 5"),  # after the zones: trusted accepts first
        ("policies_permanent", "ports:", "ports: 50052/tcp"),  # opened to all inside the policy itself
        ("policies_permanent", "target: CONTINUE", "target: ACCEPT"),
    ],
)
def test_a_policy_changed_by_hand_is_made_again(side, old, new):
    lines = recordings("applied")
    lines[side] = edited(lines[side], old, new)
    assert not FWC.as_made(F.FirewalldPolicies("runtime").process(lines[side])["llamafleet"])
    commands = shell_words(planned(FWD.rules(WORKER_RULES), lines))
    if side == "policies_runtime":
        assert commands == [["firewall-cmd", "--reload"]]  # the permanent policy is right: a reload restores it
    else:
        assert commands[:2] == [
            ["firewall-cmd", "--permanent", "--delete-policy=llamafleet"],
            ["firewall-cmd", "--permanent", "--new-policy=llamafleet"],
        ]
        assert commands[-1][:3] == ["firewall-cmd", "--permanent", "--policy=llamafleet"]  # its rules again
        assert ["firewall-cmd", "--reload"] not in commands  # the runtime policy is as made: nothing to reload


def test_firewalld_without_policies_is_refused_naming_the_version():
    lines = recordings("applied")
    lines["policies_permanent"] = lines["policies_runtime"] = []  # firewall-cmd: error: unrecognized arguments
    with pytest.raises(OperationError, match=r"--list-all-policies failed: llamafleet needs firewalld 0\.9 or later"):
        planned(FWD.rules(WORKER_RULES), lines)


def test_the_head_reaches_the_port_through_the_policy_s_accept():
    ipsets = F.FirewalldIpsets("runtime").process(recorded("firewalld_ipsets_runtime_trusted.txt"))
    assert ipsets["llamafleet-50052-tcp"].entries == (HEAD,)
    want = FWC.wanted(WORKER_RULES, {HEAD: "host0"}, {}, "public")
    assert ACCEPT in want.rich_rules and want.zones == ("public",)
    assert FWC.wanted(P.Ruleset(()), {}, {}, "public").rich_rules == frozenset()  # no rules: no policy
