"""Role firewall: llamafleet's ports open to the cluster only, in ufw, firewalld or nftables.

Contract: before the operations run, `runner.shared["firewall"][host_name]` holds a `FirewallPlan`
(made by prepare() from the cluster view, rules.py; plan.py:
`FirewallPlan(rules=(Rule(port, sources, comment, proto="tcp"), ...), ssh_port=22)`), usually put
there by a prepare() hook. A host without an entry gets an empty plan: SSH allowed, no other rule,
stale llamafleet rules removed. `ctx.vars["firewall"]` picks the frontend (defaults.yml):
auto chooses, once per run, ufw if active, else firewalld if running, else nftables. The other
frontends lose llamafleet's rules, and another one in charge stops the host (switch.py).
"""

from __future__ import annotations

from llamafleet import roles
from llamafleet.cluster import of_run
from llamafleet.errors import OperationError
from llamafleet.operations import packages
from llamafleet.roles import HostContext

NAME = "firewall"
_plan = roles.sibling(__file__, "plan")
_facts = roles.sibling(__file__, "facts")
_nftables = roles.sibling(__file__, "nftables")
_ufw = roles.sibling(__file__, "ufw")
_firewalld = roles.sibling(__file__, "firewalld")
_rules = roles.sibling(__file__, "rules")
_switch = roles.sibling(__file__, "switch")

FRONTENDS = ("ufw", "firewalld", "nftables")
PACKAGES = {"ufw": "ufw", "firewalld": "firewalld", "nftables": "nftables"}


def validate(runner, hosts) -> None:
    """Before any connection: the plans can be made (addresses hold together)."""
    _rules.plans(of_run(runner), runner.inventory)


def prepare(runner, hosts) -> None:
    """Each host's plan from the cluster view: a worker's RPC port from the head only, the API from its clients."""
    runner.shared[NAME] = _rules.plans(of_run(runner), runner.inventory)


def choose_frontend(choice: str, found) -> str | None:
    """The frontend to manage: `choice`, or for auto the one in charge (ufw > firewalld > nftables)."""
    if choice == "none":
        return None
    if choice in FRONTENDS:
        return choice
    if choice != "auto":
        raise OperationError(f"firewall: {choice!r} is not one of auto, {', '.join(FRONTENDS)}, none")
    if found.ufw_active:
        return "ufw"
    if found.firewalld_running:
        return "firewalld"
    return "nftables"


def frontend_operations(frontend: str, plan) -> list:
    """The operations that make `plan` true with one frontend."""
    if frontend == "ufw":
        return _ufw.ufw_rules(plan)
    if frontend == "firewalld":
        return _firewalld.firewalld_rules(plan)
    if frontend == "nftables":
        return _nftables.nftables_rules(plan)
    raise OperationError(f"firewall: no operations for frontend {frontend!r}")


def operations(ctx: HostContext):
    choice = ctx.vars.get("firewall", "auto")
    if choice == "none":
        yield _switch.left_alone()
        return
    plan = ctx.runner.shared.get(NAME, {}).get(ctx.name) or _plan.FirewallPlan(rules=())
    if choice == "auto":
        fact = _facts.FirewallFrontends()
        # One extra round trip, and only for auto: which frontend is in charge decides every operation.
        choice_found = ctx.runner.gather(ctx.host, [fact])[fact]
        frontend = choose_frontend(choice, choice_found)
    else:
        frontend = choose_frontend(choice, None)
    yield _switch.alone(frontend)
    yield packages.present([PACKAGES[frontend]], ctx.os["family"])
    yield from frontend_operations(frontend, plan)
    yield from _switch.removals(frontend)
