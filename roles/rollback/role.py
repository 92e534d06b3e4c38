"""Role rollback: `current` back to `previous` on every host at once, then the services restarted on it.

Used by `invoke rollback` and by a provision whose upgrade failed after hosts had switched. Every
host must have a previous release before any host switches; the two links swap, so a second
rollback goes forward again. The restarts are handled by rpc_worker (workers first) and head.
"""

from __future__ import annotations

from dataclasses import dataclass

from llamafleet import paths
from llamafleet.errors import LlamafleetError
from llamafleet.facts import CommandOutput
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell
from llamafleet.roles import Role
from llamafleet.shell import quote

NAME = "rollback"
LINKS = CommandOutput(
    quote(
        'c=$(readlink %s 2>/dev/null); p=$(readlink %s 2>/dev/null); echo "$c"; echo "$p"; '
        '[ -n "$p" ] && [ -f %s/"$p"/BUILD.json ] && echo staged; true',
        paths.CURRENT_LINK,
        paths.PREVIOUS_LINK,
        paths.INSTALL_ROOT,
    )
)
SWAP = quote(
    "set -e; cd %s; c=$(readlink current); p=$(readlink previous); "
    'ln -sfn "$p" .current.tmp; mv -T .current.tmp current; ln -sfn "$c" .previous.tmp; mv -T .previous.tmp previous',
    paths.INSTALL_ROOT,
)


@dataclass(frozen=True)
class Only:
    """The task's parameter: roll back just these hosts (the ones a failed upgrade switched); None: every host."""

    hosts: frozenset[str] | None = None


def links(text: list[str]) -> tuple[str, str, bool]:
    """(current, previous, previous is a complete release) from LINKS' output."""
    lines = [*text, "", ""]
    return lines[0], lines[1], "staged" in lines[2:]


def prepare(run, hosts) -> None:
    """Every host to roll back has a complete previous release: else no host switches."""
    only = run.handoff(Only).hosts
    missing = []
    for host in hosts:
        if only is not None and host.name not in only:
            continue
        current, previous, complete = links(run.gather(host, [LINKS])[LINKS])
        if not complete:
            missing.append(f"{host.name} ({'no previous release' if not previous else previous + ' is incomplete'})")
    if missing:
        raise LlamafleetError(f"rollback: nothing switched; no release to go back to on {', '.join(missing)}")


def operations(ctx):
    only = ctx.run.handoff(Only).hosts
    if only is not None and ctx.name not in only:
        yield Operation("llama.cpp release unchanged", [], lambda facts: NoChange("not switched in this run"))
        return
    yield rolled_back()


def rolled_back() -> Operation:
    def planner(facts: Facts):
        current, previous, _ = links(facts[LINKS])
        swap = Shell(quote("sh -c %s", SWAP))
        return Change((swap,), f"{current or 'nothing'} -> {previous}")

    restarts = ("restart llama-rpc", "restart llama-server")
    return Operation("llama.cpp back to the previous release", [LINKS], planner, restarts, idempotent=False)


ROLE = Role(NAME, operations, prefetch=(LINKS,), prepare=prepare)
