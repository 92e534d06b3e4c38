"""Inventory groups as written and as Ansible orders them: depth below all, precedence order, member hosts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InventoryError

# Limits on groups, checked before any variable is resolved (MAX_HOSTS and the range limits are in hostranges.py,
# YAML's own in yamlfile.py).
MAX_GROUP_DEPTH = 50  # groups nested below all (children of children ...)
MAX_MEMBERSHIPS = 200_000  # (host, group) pairs, a group counting the hosts of its descendants


@dataclass
class Group:
    """A group as written: its own vars, direct hosts, children, and where it was defined."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)
    depth: int = 0


def set_depths(groups: dict[str, Group], file: str) -> None:
    """Depth as Ansible counts it, the longest path from all; refuses cycles and nesting past MAX_GROUP_DEPTH."""
    waiting = {name: len(group.parents) for name, group in groups.items()}
    ready = [name for name, count in waiting.items() if count == 0]
    done: set[str] = set()
    while ready:
        group = groups[ready.pop()]
        done.add(group.name)
        if group.depth > MAX_GROUP_DEPTH:
            message = f"nested more than {MAX_GROUP_DEPTH} groups deep (the limit)"
            raise InventoryError(message, file=file, where=f"group {group.name}")
        for child in group.children:
            groups[child].depth = max(groups[child].depth, group.depth + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(done) < len(groups):
        _raise_cycle(groups, done, file)


def _raise_cycle(groups: dict[str, Group], done: set[str], file: str) -> None:
    """Name a group on a cycle: every group left over has a parent left over, so walking parents loops."""
    parent_of = {name: min(g.parents - done) for name, g in groups.items() if name not in done}
    name, seen = next(iter(parent_of)), set()
    while name not in seen:
        seen.add(name)
        name = parent_of[name]
    raise InventoryError(f"group '{name}' would contain itself", file=file, where=f"group {parent_of[name]}")


def precedence_order(groups: dict[str, Group]) -> list[str]:
    """Groups in Ansible's precedence order: depth, then ansible_group_priority, then name."""

    def key(name: str) -> tuple:
        group = groups[name]
        priority = group.vars.get("ansible_group_priority")
        return (group.depth, 1 if priority is None else priority, name)

    return sorted(groups, key=key)


def members(groups: dict[str, Group], order: list[str], file: str) -> dict[str, list[str]]:
    """Every group's hosts, its descendants' included, in definition order; groups in precedence order."""
    found: dict[str, list[str]] = {}
    total = 0
    for name in sorted(groups, key=lambda n: -groups[n].depth):  # children are deeper than their parents
        hosts = dict.fromkeys(groups[name].hosts)
        for child in groups[name].children:
            hosts.update(dict.fromkeys(found[child]))
        found[name] = list(hosts)
        total += len(hosts)
        if total > MAX_MEMBERSHIPS:
            message = f"groups have more than {MAX_MEMBERSHIPS} host memberships in all (the limit)"
            raise InventoryError(message, file=file, where=f"group {name}")
    return {name: found[name] for name in order}
