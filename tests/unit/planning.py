"""What the operation tests share: fact values a host gave (recorded), and an operation planned from them."""

from __future__ import annotations

from recordings import recorded_lines

from llamafleet import facts
from llamafleet.operations import Change, Facts, Operation

APP_CONF = "name=w1\nport=50052\n"  # the content of the file pathinfo_file.txt describes
ODD_PATH = "/srv/llama models; rm -rf x"  # a path from YAML: must stay one shell word


def parsed(fact: facts.Fact, name: str):
    """The value a host gave for `fact`, from the recorded output `name`."""
    return fact.process(recorded_lines(name))


def plan(operation: Operation, *values):
    """Plan `operation` with one value per fact it asked for, in order."""
    assert len(values) == len(operation.facts)
    return operation.plan(Facts({f.key: v for f, v in zip(operation.facts, values)}))


def commands_of(change: Change) -> list[str]:
    """The shell commands of a planned change (which must be a change)."""
    assert isinstance(change, Change), change
    return [step.command for step in change.steps]


FILE = parsed(facts.PathInfo("/x"), "pathinfo_file.txt")  # app.conf, 0640 root:root
DIRECTORY = parsed(facts.PathInfo("/x"), "pathinfo_directory.txt")  # 0750 root:root
SYMLINK = parsed(facts.PathInfo("/x"), "pathinfo_symlink.txt")  # -> /tmp/llamafleet-facts/releases
MISSING = parsed(facts.PathInfo("/x"), "pathinfo_missing.txt")
