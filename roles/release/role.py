"""Role release: every host switches to the staged llama.cpp release together, after all have staged it.

Role llama_cpp stages the release beside the running one on every host (which keeps serving); this
role's phase starts only when every host is healthy, then points `current` at it (the release
before becomes `previous`) and checks that every host now runs the same build (the identity gate).
The restarts it notifies are handled by rpc_worker (workers first) and head. A provision that fails
after a switch is rolled back by the CLI to `previous` on every switched host (see role rollback).
"""

from __future__ import annotations

from llamafleet.roles.llama_cpp import role as llama_cpp

NAME = "release"
SWITCHED = "release switched"  # Run.shared key: hosts whose current release changed in this run


def operations(ctx):
    target = ctx.run.shared[llama_cpp.NAME][ctx.name]
    yield llama_cpp.switched(target, lambda: ctx.run.shared.setdefault(SWITCHED, set()).add(ctx.name))


def gate(run, hosts) -> list[str]:
    return llama_cpp.identity_gate(run, hosts, NAME)
