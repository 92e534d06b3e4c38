"""What each task runs: phases of roles, in order (workers before the head); roles load with the task that uses them.

Checking a task's flags (`selected`) loads neither the runner nor any role: a command line's mistakes are
reported, and its hosts' facts start to be read, before the role code loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .errors import UsageError
from .phases import Phase

if TYPE_CHECKING:
    from .roles import Role


def load(name: str) -> Role:
    """Role `name` (roles.load), imported when a playbook is built."""
    from .roles import load as load_role  # the role contract and the roles load with the first playbook

    return load_role(name)


# The roles of provision, in order, and what --tags takes along: release switches to what llama_cpp stages, and
# the services restart on the release it switched to.
PROVISION_ROLES = ("base", "llama_cpp", "release", "firewall", "tunnel", "rpc_worker", "head", "balancer")
PROVISION_NEEDS = {"release": ("llama_cpp", "rpc_worker", "head")}
NOT_BALANCERS = "all:!balancers"


def provision(tags: Iterable[str] = (), skip_tags: Iterable[str] = ()) -> list[Phase]:
    """Every role, or those --tags names (with the roles they read from) minus those --skip-tags names."""
    wanted = selected(PROVISION_ROLES, tuple(tags), tuple(skip_tags), PROVISION_NEEDS)
    phases = {
        "base": lambda: Phase("base", (load("base"),)),
        # built or fetched, staged beside the running release (balancers run no llama.cpp)
        "llama_cpp": lambda: Phase("llama_cpp", (load("llama_cpp"),), group=NOT_BALANCERS),
        # then every host switches together, or none
        "release": lambda: Phase("release", (load("release"),), group=NOT_BALANCERS, needs_all=True),
        "firewall": lambda: Phase("firewall", (load("firewall"),)),
        # WireGuard between each head and its workers (cluster_tunnel) and the balancers, its UDP port already open:
        # the keys made on each host first, then every host's configuration from their public keys; down elsewhere
        "tunnel": lambda: Phase("tunnel", (load("tunnel/keys"), load("tunnel"))),
        "rpc_worker": lambda: Phase("workers", (load("rpc_worker"),), group="workers"),
        "head": lambda: Phase("head", (load("head"),), group="head", needs_all=True),
        # HAProxy in front of the heads (reloaded, never restarted, when they change)
        "balancer": lambda: Phase("balancers", (load("balancer"),), group="balancers"),
    }
    return [phases[name]() for name in PROVISION_ROLES if name in wanted]


def tunnel_keys() -> list[Phase]:
    """What makes a host's WireGuard key and nothing else (before the balancers' tunnel names it)."""
    return [Phase("base", (load("base"),)), Phase("tunnel keys", (load("tunnel/keys"),))]


def selected(
    roles: tuple[str, ...], tags: tuple[str, ...], skip: tuple[str, ...], needs: Mapping[str, tuple[str, ...]]
) -> set[str]:
    """The roles a run plays: all, or the tagged ones and those they need, minus the skipped ones."""
    for flag, names in (("--tags", tags), ("--skip-tags", skip)):
        for name in names:
            if name not in roles:
                raise UsageError(f"{flag}: {name!r} is not a role of this task (its roles: {', '.join(roles)})")
    wanted = set(tags or roles)
    for name in tags:
        wanted.update(needs.get(name, ()))
    for name in skip:
        needing = [role for role in sorted(wanted - set(skip)) if name in needs.get(role, ())]
        if needing:
            raise UsageError(f"--skip-tags: {needing[0]} needs {name}: run them together, or skip {needing[0]} too")
    wanted -= set(skip)
    if not wanted:
        raise UsageError("--tags/--skip-tags: no role left to play")
    return wanted


def deploy() -> list[Phase]:
    """No model for a cluster whose builds differ; the model onto the head (and into the workers' RPC caches with
    rpc_cache_seed), the head restarted on it (the workers are provision's), then older models pruned, only once
    the head serves the new one."""
    return [
        Phase("identity", (load("llama_cpp/gate"),), group=NOT_BALANCERS),
        Phase("model", (load("model"),)),
        Phase("head", (load("head"),), group="head"),
        Phase("prune", (load("model/prune"),), needs_all=True),
    ]


def rollback() -> list[Phase]:
    """Every host back to its previous release at once, then workers restarted, then the head."""
    return [
        Phase("rollback", (load("rollback"),), group=NOT_BALANCERS, needs_all=True),
        Phase("workers", (load("rpc_worker"),), group="workers"),
        Phase("head", (load("head"),), group="head", needs_all=True),
    ]


def teardown() -> list[Phase]:
    """The head first (it holds the workers' sessions), then every other host, then the tunnels."""
    return [
        Phase("head", (load("teardown"),), group="head"),
        Phase("teardown", (load("teardown"),)),
        Phase("tunnel", (load("tunnel/teardown"),)),
    ]
