"""The identity gate: every host runs the same llama.cpp, its files as recorded at install.

Run by role release once current is switched, and as a role of its own before deploy starts a
model (no model for a cluster of mixed builds).
"""

from __future__ import annotations

import json
from typing import Any

from llamafleet.inventory import Host
from llamafleet.roles import Role

from . import identity
from . import settings as llama_cpp_settings
from .hostfacts import IDENTITY, RELEASES
from .targets import Targets


def identity_gate(run, hosts: list[Host], role: str) -> list[str]:
    """Every host of a cluster must run the same source; within a platform group every file must match the artifact.

    Run by role release once current is switched, with the facts its operations read (`role`).
    """
    manifests: dict[str, Any] = {}
    run.each_host(hosts, lambda host: manifests.__setitem__(host.name, _read_identity(run, host, role)))
    targets = run.handoff(Targets).by_host
    group_files = {t.group.name: t.artifact.files for t in targets.values() if t.artifact}
    wanted = {h.name: llama_cpp_settings.settings(h) for h in hosts}
    problems: list[str] = []
    # One build inside each cluster; clusters may differ from each other while a rolling upgrade goes round.
    for members in _partition(run, hosts):
        head = members[0]
        ours = {name: manifests[name] for name in members if name in manifests}
        problems += identity.identity_problems(
            ours, {n: wanted[n] for n in ours}, head if head in ours else None, group_files
        )
    if problems:
        problems.append(_remedy(problems, manifests))
    return problems


def _partition(run, hosts: list[Host]) -> list[list[str]]:
    """The run's hosts by cluster, each list led by its head when the run has it; hosts of no cluster (balancers)
    left out."""
    names = {host.name for host in hosts}
    found = []
    for view in run.fleet.clusters:
        members = [name for name in (view.head, *(w.name for w in view.workers)) if name in names]
        if members:
            found.append(members if view.head in names else [view.head, *members])
    return found


def _remedy(problems: list[str], manifests: dict[str, Any]) -> str:
    """What to do about the hosts named in the problems."""
    odd = sorted({p.split(":", 1)[0] for p in problems if p.split(":", 1)[0] in manifests})
    steps = [
        f"on {h} remove {RELEASES}/{manifests[h]['release_id']}" for h in odd if (manifests[h] or {}).get("release_id")
    ]
    fix = "; ".join(steps) + ", then provision again" if steps else "provision the hosts named above"
    return f"stopped before any service (re)start. To reinstall: {fix}"


def _read_identity(run, host: Host, role: str) -> dict[str, Any] | None:
    settled = run.settled_facts(host, role)
    if settled is not None and IDENTITY in settled:
        text = "\n".join(settled[IDENTITY])
    else:  # read since the host last changed (the run's first batch, for deploy), else now
        text = "\n".join(run.gather(host, [IDENTITY])[IDENTITY] or [])
    if "@@files" not in text:
        return None
    manifest_text, _, measured = text.partition("@@files")
    try:
        manifest = json.loads(manifest_text)
    except ValueError:
        return {"version": "unreadable BUILD.json", "files": {}}
    return identity.with_measured_files(manifest, measured)


def _deploy_gate(run, hosts: list[Host]) -> list[str]:
    return identity_gate(run, hosts, ROLE.name)


# Deploy's first phase: nothing to converge, the running release of each host read with the run's first batch.
ROLE = Role("llama_cpp identity", prefetch=(IDENTITY,), gate=_deploy_gate)
