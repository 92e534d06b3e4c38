"""Role teardown: llamafleet's services and firewall rules removed; with purge, everything it put on the host.

`invoke teardown` stops and removes the units and the firewall rules; `--purge` also removes the
releases, models, caches, configuration (the API key among it) and the service user llamafleet
created, but never across a mount point: a filesystem mounted inside those trees (a shared models
folder) stays with its files, and the run says so (purge.py). Packages stay (other software may use
them; a balancer's HAProxy is stopped and disabled, its llamafleet drop-in removed), and so does a
firewall's own configuration: only llamafleet's rules go, and SSH stays allowed (in ufw by the same
rule without llamafleet's comment).
"""

from __future__ import annotations

from dataclasses import dataclass

from llamafleet import paths
from llamafleet.operations import files, systemd, users
from llamafleet.roles import Role
from llamafleet.roles.balancer import role as balancer
from llamafleet.roles.base import settings as base_settings
from llamafleet.roles.firewall import firewalld, nftables, switch, ufw
from llamafleet.roles.firewall import role as firewall
from llamafleet.roles.firewall import ruleset as firewall_ruleset

from . import purge as _purge

NAME = "teardown"
PURGED = (paths.INSTALL_ROOT, paths.STATE_DIR, f"/var/cache/{paths.CACHE_NAME}", paths.CONFIG_DIR)


@dataclass(frozen=True)
class Purge:
    """The task's parameter (--purge): also remove releases, models, caches, configuration and the user."""

    purge: bool = False


def operations(ctx):
    for unit in (paths.SERVER_UNIT, paths.RPC_UNIT):
        yield systemd.service_absent(unit)
    if "balancers" in ctx.host.groups:  # HAProxy stays installed, stopped, without llamafleet's drop-in
        yield systemd.service(balancer.UNIT, running=False, enabled=False)
        yield files.absent(f"{systemd.UNIT_DIR}/{balancer.DROPIN}")
    yield from firewall_rules_absent(ctx)
    if ctx.run.handoff(Purge).purge:
        yield _purge.trees_absent(PURGED)
        yield users.created_user_absent(base_settings.settings(ctx.host, ctx.run.inventory_file).user)


def firewall_rules_absent(ctx):
    """llamafleet's rules out of the frontend it manages (as the firewall role chooses it) and every other.

    The managed one may be filtering: SSH stays allowed throughout (in ufw the SSH rule stays, without
    llamafleet's comment; firewalld's ssh service and nftables without our table were never ours).
    """
    choice = firewall.frontend_choice(ctx.host)
    if choice == "none":
        yield switch.left_alone()
        return
    found = (
        ctx.run.gather(ctx.host, [firewall.FRONTENDS_IN_CHARGE])[firewall.FRONTENDS_IN_CHARGE]
        if choice == "auto"
        else None
    )
    frontend = firewall.choose_frontend(choice, found)
    managed = {
        "ufw": ufw.handed_over,
        "firewalld": lambda: firewalld.rules(firewall_ruleset.Ruleset(rules=())),
        "nftables": nftables.removed,
    }
    yield managed[frontend]()
    yield from switch.removals(frontend)


ROLE = Role(NAME, operations, prefetch=(firewall.FRONTENDS_IN_CHARGE,))  # which frontend is in charge, for auto
