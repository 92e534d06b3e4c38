"""Role firewall: llamafleet's ports open to the cluster only, in ufw, firewalld or nftables.

Contract: before the operations run, `run.shared["firewall"][host_name]` holds a `FirewallPlan`
(made by prepare() from the cluster view, rules.py; plan.py:
`FirewallPlan(rules=(Rule(port, sources, comment, proto="tcp"), ...), ssh_port=22)`), usually put
there by a prepare() hook. A host without an entry gets an empty plan: SSH allowed, no other rule,
stale llamafleet rules removed. `frontend_choice(host)` (variable `firewall`) picks the frontend (defaults.yml):
auto chooses, once per run, ufw if active, else firewalld if running, else nftables. The other
frontends lose llamafleet's rules, and another one in charge stops the host (switch.py).
"""

from __future__ import annotations

from llamafleet.errors import OperationError
from llamafleet.operations import packages
from llamafleet.roles import HostContext

from . import facts as _facts
from . import firewalld as _firewalld
from . import nftables as _nftables
from . import plan as _plan
from . import rules as _rules
from . import switch as _switch
from . import ufw as _ufw

NAME = "firewall"

FRONTENDS = ("ufw", "firewalld", "nftables")
# Which frontend is in charge (for auto), read with the run's first batch (runner.prefetch).
PREFETCH = (_facts.FirewallFrontends(),)
PACKAGES = {"ufw": "ufw", "firewalld": "firewalld", "nftables": "nftables"}


def validate(run, hosts) -> None:
    """Before any connection: the plans can be made (addresses hold together)."""
    _rules.plans(run.cluster, run.inventory)


def prepare(run, hosts) -> None:
    """Each host's plan from the cluster view: a worker's RPC port from the head only, the API from its clients."""
    run.shared[NAME] = _rules.plans(run.cluster, run.inventory)


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


def frontend_choice(host) -> str:
    """The host's `firewall` (an enum the inventory checked and defaulted): auto, ufw, firewalld, nftables, none."""
    return host.vars["firewall"]


def operations(ctx: HostContext):
    choice = frontend_choice(ctx.host)
    if choice == "none":
        yield _switch.left_alone()
        return
    plan = ctx.run.shared.get(NAME, {}).get(ctx.name) or _plan.FirewallPlan(rules=())
    if choice == "auto":
        fact = PREFETCH[0]  # which frontend is in charge decides every operation
        choice_found = ctx.run.gather(ctx.host, [fact])[fact]
        frontend = choose_frontend(choice, choice_found)
    else:
        frontend = choose_frontend(choice, None)
    yield _switch.alone(frontend)
    yield packages.present([PACKAGES[frontend]], ctx.os["family"])
    yield from frontend_operations(frontend, plan)
    yield from _switch.removals(frontend)
