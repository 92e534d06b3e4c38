"""User operations."""

from __future__ import annotations

from ..facts import Passwd
from ..ssh import quote
from .base import Change, Facts, NoChange, Operation, Shell

NOLOGIN = "/usr/sbin/nologin"


def system_user(name: str, *, home: str = "/nonexistent") -> Operation:
    """`name` is a system user with its own group, no login shell and no home directory."""
    fact = Passwd(name)

    def plan(facts: Facts):
        entry = facts[fact]
        if entry is None:
            create = "useradd --system --user-group --no-create-home --home-dir %s --shell %s %s"
            return Change((Shell(quote(create, home, NOLOGIN, name)),), "missing")
        if entry["shell"] != NOLOGIN:
            return Change((Shell(quote("usermod --shell %s %s", NOLOGIN, name)),), f"shell is {entry['shell']}")
        return NoChange(f"system user exists (uid {entry['uid']})")

    return Operation(f"system user {name}", [fact], plan)
