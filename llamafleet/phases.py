"""A phase of a playbook: roles applied to the hosts of a group. Its own module, so that a task's playbook is
checked (--tags) before the runner and the roles load."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .roles import Role


@dataclass(frozen=True)
class Phase:
    """Roles applied to the hosts of a group (or a pattern as Ansible writes it: `all:!balancers`); `needs_all`
    phases start only if every host is healthy."""

    name: str
    roles: tuple[Role, ...]
    group: str = "all"
    needs_all: bool = False
