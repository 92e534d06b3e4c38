"""Every host's firewall holds llamafleet's rules, as the firewall role would write them."""

from __future__ import annotations

import pytest

from llamafleet.operations.base import Change
from llamafleet.verify.expected import FIREWALL_LOOK, firewall_role
from llamafleet.verify.plugin import require

firewall_facts = firewall_role._facts
POLICY = firewall_role._firewalld.POLICY
LOOK = f"{FIREWALL_LOOK} | firewall-cmd --info-policy={POLICY}"


def _rules(ruleset) -> str:
    rules = [f"{r.proto}/{r.port} from {', '.join(r.sources)} only" for r in ruleset.rules]
    return "; ".join([f"ssh {ruleset.ssh_port} open", *rules])


def _found_rules(facts) -> list[str]:
    """llamafleet's rules as the host holds them now (nftables table, ufw rules, firewalld's policy in force)."""
    nft, ufw, policies = (
        firewall_facts.NftTable(),
        firewall_facts.UfwStatus(),
        firewall_facts.FirewalldPolicies("runtime"),
    )
    found = []
    if nft in facts and facts[nft] is not None:
        found += [f"nft: {r.proto}/{r.port} {r.verdict} from {', '.join(r.sources) or 'any'}" for r in facts[nft].rules]
    if ufw in facts and facts[ufw] is not None:
        found += ["ufw " + " ".join(rule) for rule in facts[ufw].rules]
    if policies in facts and facts[policies] is not None:
        policy = facts[policies].get(POLICY)
        rules = policy.rich_rules if policy else ()
        found += [f"firewalld policy {POLICY}: {rule}" for rule in rules] or [f"firewalld: no policy {POLICY}"]
    return found


def test_firewall_rules(node, observed, expect):
    """The host's firewall holds llamafleet's rules, as provision writes them."""
    if firewall_role.frontend_choice(node) == "none":
        pytest.skip(f"{node.name}: firewall: none in the inventory")
    operations = expect.firewall_operations(node, observed.facts.get("frontends"))
    drift = []
    for operation in operations:
        plan = operation.plan(observed.firewall_facts)
        if isinstance(plan, Change):
            drift.append(f"{operation.description}: {plan.reason}")
    require(
        not drift,
        node.name,
        "firewall active with llamafleet's rules",
        _rules(expect.firewall_rulesets[node.name]),
        "; ".join(drift + _found_rules(observed.firewall_facts)),
        LOOK,
    )
