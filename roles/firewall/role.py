"""Role firewall: llamafleet's ports open to the cluster only, in ufw, firewalld or nftables.

Contract: before the operations run, prepare() hands over `Rulesets`: a `Ruleset` per host, made
from the cluster view (rules.py; ruleset.py: `Ruleset(rules=(Rule(port, sources, comment,
proto="tcp"), ...), ssh_port=22)`). A host without an entry gets an empty ruleset: SSH allowed, no
other rule, stale llamafleet rules removed. `frontend_choice(host)` (variable `firewall`) picks the
frontend (defaults.yml): auto chooses, once per run, ufw if active, else firewalld if running, else nftables. The other
frontends lose llamafleet's rules, and another one in charge stops the host (switch.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llamafleet.errors import OperationError
from llamafleet.operations import packages
from llamafleet.roles import Role, templates_beside
from llamafleet.run import HostContext

from . import facts as _facts
from . import firewalld as _firewalld
from . import nftables as _nftables
from . import rules as _rules
from . import ruleset as _ruleset
from . import settings as _settings
from . import switch as _switch
from . import ufw as _ufw

NAME = "firewall"

FRONTENDS = ("ufw", "firewalld", "nftables")
# Which frontend is in charge (for auto), read with the run's first batch (prefetch).
FRONTENDS_IN_CHARGE = _facts.FirewallFrontends()
PACKAGES = {"ufw": "ufw", "firewalld": "firewalld", "nftables": "nftables"}


@dataclass
class Rulesets:
    """prepare's hand-off to the operations: host name -> its Ruleset."""

    by_host: dict = field(default_factory=dict)


def validate(run, hosts) -> None:
    """Before any connection: the plans can be made (addresses hold together)."""
    _rules.rulesets(run.fleet, run.inventory)


def prepare(run, hosts) -> None:
    """Each host's ruleset from the cluster view: a worker's RPC port from the head only, the API from its clients."""
    run.handoff(Rulesets).by_host.update(_rules.rulesets(run.fleet, run.inventory))


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


def frontend_operations(frontend: str, ruleset) -> list:
    """The operations that make `ruleset` true with one frontend."""
    if frontend == "ufw":
        return _ufw.ufw_rules(ruleset)
    if frontend == "firewalld":
        return _firewalld.firewalld_rules(ruleset)
    if frontend == "nftables":
        return _nftables.nftables_rules(ruleset)
    raise OperationError(f"firewall: no operations for frontend {frontend!r}")


def frontend_choice(host) -> str:
    """The host's `firewall` (settings.py): auto, ufw, firewalld, nftables or none."""
    return _settings.settings(host).firewall


def operations(ctx: HostContext):
    choice = frontend_choice(ctx.host)
    if choice == "none":
        yield _switch.left_alone()
        return
    ruleset = ctx.run.handoff(Rulesets).by_host.get(ctx.name) or _ruleset.Ruleset(rules=())
    if choice == "auto":
        fact = FRONTENDS_IN_CHARGE  # which frontend is in charge decides every operation
        choice_found = ctx.run.gather(ctx.host, [fact])[fact]
        frontend = choose_frontend(choice, choice_found)
    else:
        frontend = choose_frontend(choice, None)
    yield _switch.alone(frontend)
    yield packages.present([PACKAGES[frontend]], ctx.os["family"])
    yield from frontend_operations(frontend, ruleset)
    yield from _switch.removals(frontend)


ROLE = Role(
    NAME,
    operations,
    template_dir=templates_beside(__file__),
    prefetch=(FRONTENDS_IN_CHARGE,),
    validate=validate,
    prepare=prepare,
)
