"""ufw: llamafleet's rules carry the comment `llamafleet ...`; rules of anyone else are left alone."""

from __future__ import annotations

from llamafleet.errors import OperationError
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell
from llamafleet.shell import quote

from . import facts as _facts
from . import ruleset as _ruleset


def _ours(words: tuple[str, ...]) -> bool:
    """A rule from `ufw show added` that llamafleet wrote (its comment starts with the tag)."""
    if "comment" not in words:
        return False
    index = words.index("comment")
    return index + 1 < len(words) and words[index + 1].split(" ")[0] == _ruleset.TAG


def ssh_rule(ruleset) -> tuple[str, ...]:
    return ("allow", f"{ruleset.ssh_port}/tcp", "comment", f"{_ruleset.TAG} ssh")


def allow_rules(ruleset) -> list[tuple[str, ...]]:
    """The allow rules in the words `ufw show added` prints them with."""
    return [
        (
            "allow",
            *(("in", "on", rule.interface) if rule.interface else ()),
            *("from", source, "to", "any", "port", str(rule.port), "proto", rule.proto, "comment", rule.tag),
        )
        for rule in ruleset.rules
        for source in rule.sources
    ]


def deny_rules(ruleset) -> list[tuple[str, ...]]:
    return [("deny", f"{rule.port}/{rule.proto}", "comment", rule.tag) for rule in ruleset.rules]


def _command(verb: str, words: tuple[str, ...]) -> Shell:
    return Shell(" ".join(["ufw", *([verb] if verb else []), *(quote("%s", word) for word in words)]))


def _status(facts: Facts, fact) -> object:
    state = facts[fact]
    if state is None:
        raise OperationError("`ufw status verbose` failed: is ufw installed?")
    return state


def rules(ruleset) -> Operation:
    """ufw has exactly `ruleset`'s llamafleet rules: SSH allowed, each port open to its sources, denied to others."""
    status = _facts.UfwStatus()

    def planner(facts: Facts):
        present = set(_status(facts, status).rules)
        steps = []
        if ssh_rule(ruleset) not in present:  # before anything else, so enabling never locks us out
            steps.append(_command("", ssh_rule(ruleset)))
        wanted = {ssh_rule(ruleset), *allow_rules(ruleset), *deny_rules(ruleset)}
        stale = [words for words in _status(facts, status).rules if _ours(words) and words not in wanted]
        steps += [_command("delete", words[: words.index("comment")]) for words in stale]
        # Allows go first in ufw's list (prepend), the deny last: the sources match before the deny.
        steps += [_command("prepend", words) for words in allow_rules(ruleset) if words not in present]
        steps += [_command("", words) for words in deny_rules(ruleset) if words not in present]
        if not steps:
            return NoChange(f"{len(wanted)} llamafleet rule(s) present, none stale")
        why = [f"{len(steps) - len(stale)} missing"] if len(steps) > len(stale) else []
        why += [f"{len(stale)} stale"] if stale else []
        return Change(tuple(steps), ", ".join(why))

    return Operation("ufw llamafleet rules", [status], planner)


def enabled() -> Operation:
    """ufw is active now and at boot (after rules(), so the SSH rule is already there)."""
    status = _facts.UfwStatus()

    def planner(facts: Facts):
        state = _status(facts, status)
        steps = [] if state.active else [Shell("ufw --force enable")]
        steps += [] if state.unit_enabled else [Shell("systemctl enable ufw.service")]
        if not steps:
            return NoChange("ufw active, ufw.service enabled")
        return Change(tuple(steps), "ufw inactive" if not state.active else "ufw.service not enabled")

    return Operation("ufw active and enabled", [status], planner)


# ufw keeps each rule's comment hex-encoded in its rule files: a grep finds ours without starting ufw (and nothing
# starts on a host with no ufw folder).
TRACE = quote(
    "[ -d /etc/ufw ] && grep -qs -e %s /etc/ufw/user.rules /etc/ufw/user6.rules",
    "comment=" + _ruleset.TAG.encode().hex(),
)


def leftovers() -> _facts.Traced:
    """ufw's state when its rule files hold a llamafleet rule (None otherwise, or when ufw is gone)."""
    return _facts.Traced(TRACE, _facts.UfwStatus())


def ours(state) -> list[tuple[str, ...]]:
    """llamafleet's rules in a ufw state (none when the state is None)."""
    return [words for words in state.rules if _ours(words)] if state else []


def removed() -> Operation:
    """ufw holds no llamafleet rule (another frontend is managed); ufw itself and others' rules stay."""
    found = leftovers()

    def planner(facts: Facts):
        state = facts[found]
        rules = ours(state)
        if not rules:
            return NoChange("ufw holds no llamafleet rule")
        if state.active:  # our SSH rule may be what keeps the controller in: leave an active ufw alone
            raise OperationError("ufw is active and holds llamafleet rules: disable it (ufw disable) first")
        steps = tuple(_command("delete", words[: words.index("comment")]) for words in rules)
        return Change(steps, f"{len(rules)} llamafleet rule(s) left in inactive ufw")

    return Operation("ufw holds no llamafleet rule", [found], planner)


def ufw_rules(ruleset) -> list[Operation]:
    """Every operation that makes `ruleset` true with ufw, in order."""
    return [rules(ruleset), enabled()]


def handed_over() -> Operation:
    """ufw holds no llamafleet rule, active or not (teardown): the SSH rule stays as a plain rule of its own.

    Rewriting a rule without a comment only updates it in ufw, so SSH is allowed at every moment.
    """
    found = leftovers()

    def planner(facts: Facts):
        rules = ours(facts[found])
        if not rules:
            return NoChange("ufw holds no llamafleet rule")
        ssh = [words for words in rules if words[-1] == f"{_ruleset.TAG} ssh"]
        steps = [_command("", words[: words.index("comment")]) for words in ssh]  # kept, without our comment
        steps += [_command("delete", words[: words.index("comment")]) for words in rules if words not in ssh]
        return Change(tuple(steps), f"{len(rules)} llamafleet rule(s); SSH stays allowed by a plain rule")

    return Operation("ufw holds no llamafleet rule (SSH kept open)", [found], planner)
