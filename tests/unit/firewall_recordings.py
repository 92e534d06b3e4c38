"""What the firewall tests share: the role's modules, the recording lab's addresses, plans from its recordings."""

from __future__ import annotations

from recordings import recorded_lines, words

from llamafleet.operations import Change, Facts, Operation, Shell
from llamafleet.roles.firewall import role as FIREWALL

P, F, NFT, UFW, FWD = FIREWALL._ruleset, FIREWALL._facts, FIREWALL._nftables, FIREWALL._ufw, FIREWALL._firewalld
HEAD, W1, W2, OLD_HEAD = "10.213.52.2", "10.213.52.3", "10.213.52.4", "10.213.52.99"  # the recording lab's
WORKER_RULES = P.Ruleset((P.Rule(50052, (HEAD,), "rpc"),))
HEAD_RULES = P.Ruleset((P.Rule(8080, (HEAD, W1, W2), "api"),))


def recorded(name: str) -> list[str]:
    """The lines of a recording under tests/fixtures/recorded/firewall/."""
    return recorded_lines(f"firewall/{name}")


def plan(operation: Operation, *names: str):
    """Plan `operation` with each of its facts read from one recording, in order."""
    assert len(names) == len(operation.facts)
    return operation.plan(Facts({f.key: f.process(recorded(n)) for f, n in zip(operation.facts, names)}))


def shell_words(change) -> list[list[str]]:
    """The shell words of each command of a planned change (which must be a change)."""
    assert isinstance(change, Change), change
    return [words(step.command) for step in change.steps if isinstance(step, Shell)]
