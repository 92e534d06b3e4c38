"""Changing frontends: llamafleet's rules leave every frontend but the managed one, planned from facts.

When a host's frontend changes (the inventory's `firewall`, what `auto` finds, a frontend
removed), the old one would keep llamafleet's rules, which can still open or close ports. So each
run, once the managed frontend holds the ruleset (SSH first), every other frontend found on the host
loses llamafleet's own rules, and nothing else: ufw rules commented `llamafleet ...`, firewalld's
policy `llamafleet`, its ipsets `llamafleet-*` and the rich rules that use them, nftables' table `inet llamafleet` with
its file and include. A frontend with nothing of ours costs a grep, not a Python start-up.

A frontend still in charge beside the managed one (ufw active, firewalld running) stops the host
before anything changes: its policy would go on filtering llamafleet's ports whatever the managed
frontend allows, and turning someone's firewall off is not llamafleet's call.

`firewall: none` touches no firewall; llamafleet rules found on the host are reported as a warning.
"""

from __future__ import annotations

from llamafleet.errors import OperationError
from llamafleet.operations import Facts, NoChange, Operation

from . import facts as _facts
from . import firewalld as _firewalld
from . import nftables as _nftables
from . import ufw as _ufw

FRONTENDS = ("ufw", "firewalld", "nftables")
TURN_OFF = {"ufw": "ufw disable", "firewalld": "systemctl disable --now firewalld"}


def in_charge(found) -> list[str]:
    """The frontends filtering traffic now, by their own word (nftables has no such state)."""
    return [name for name, on in (("ufw", found.ufw_active), ("firewalld", found.firewalld_running)) if on]


def alone(frontend: str) -> Operation:
    """No frontend other than `frontend` is in charge (checked before anything of the role changes)."""
    fact = _facts.FirewallFrontends()

    def planner(facts: Facts):
        others = [name for name in in_charge(facts[fact]) if name != frontend]
        if others:
            other = others[0]
            raise OperationError(
                f"firewall: {frontend} is managed but {other} is also in charge here and would go on filtering "
                f"llamafleet's ports: turn it off (`{TURN_OFF[other]}`) or set firewall: {other}"
            )
        return NoChange(f"no frontend but {frontend} in charge")

    return Operation(f"no firewall frontend in charge but {frontend}", [fact], planner)


def removals(frontend: str | None) -> list[Operation]:
    """llamafleet's rules removed from every frontend but `frontend` (None: from all; teardown)."""
    found = {"ufw": _ufw.removed, "firewalld": _firewalld.removed, "nftables": _nftables.removed}
    return [found[name]() for name in FRONTENDS if name != frontend]


def left_alone() -> Operation:
    """firewall: none: nothing changes; llamafleet rules still in a frontend are a warning."""
    ufw, firewalld, nftables = _ufw.leftovers(), _firewalld.leftovers(), _nftables.removed()

    def planner(facts: Facts):
        found = []
        if _ufw.ours(facts[ufw]):
            found.append(f"ufw ({len(_ufw.ours(facts[ufw]))} rules)")
        change = _firewalld.leftover_diff(firewalld, facts)
        if change is not None:
            found.append(f"firewalld ({_firewalld.leftover_summary(change)})")
        if not isinstance(nftables.plan(facts), NoChange):
            found.append(f"nftables (table inet llamafleet or {_nftables.TABLE_FILE})")
        if not found:
            return NoChange("firewall: none, and no llamafleet rule in any frontend")
        return NoChange(
            f"warning: firewall: none leaves llamafleet's rules where they are: {', '.join(found)}; "
            "they still open or close ports (set the frontend to have them removed)"
        )

    return Operation("firewall left alone", [ufw, *firewalld, *nftables.facts], planner)
