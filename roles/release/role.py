"""Role release: every host switches to the staged llama.cpp release together, after all have staged it.

Role llama_cpp stages the release beside the running one on every host (which keeps serving); this
role's phase starts only when every host is healthy, then points `current` at it (the release
before becomes `previous`) and checks that every host now runs the same build (the identity gate).
The restarts it notifies are handled by rpc_worker (workers first) and head. A provision that fails
after a switch is rolled back to `previous` on every switched host (see role rollback).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llamafleet.roles import Role
from llamafleet.roles.llama_cpp.gate import identity_gate
from llamafleet.roles.llama_cpp.install import switched
from llamafleet.roles.llama_cpp.targets import Targets

NAME = "release"


@dataclass
class Switched:
    """Hand-off to the task: hosts whose current release changed in this run (to roll back if the run fails)."""

    hosts: set[str] = field(default_factory=set)


def operations(ctx):
    target = ctx.run.handoff(Targets).by_host[ctx.name]
    yield switched(target, lambda: ctx.run.handoff(Switched).hosts.add(ctx.name))


def gate(run, hosts) -> list[str]:
    return identity_gate(run, hosts, NAME)


ROLE = Role(NAME, operations, gate=gate)
