"""Commands that are not a state: they say so (idempotent=False), and are meant for handlers."""

from __future__ import annotations

from ..facts import PathInfo
from .base import Change, Facts, NoChange, Operation, Shell


def run(description: str, command: str, *, creates: str | None = None) -> Operation:
    """Run `command` (already quoted); with `creates`, only while that path does not exist."""
    if creates is None:
        return Operation(description, [], lambda facts: Change((Shell(command),), "runs every time"), idempotent=False)
    info = PathInfo(creates, False)

    def plan(facts: Facts):
        if facts[info] is not None:
            return NoChange(f"{creates} exists")
        return Change((Shell(command),), f"{creates} missing")

    return Operation(description, [info], plan)
