"""Root never writes, renames or removes anything in a worker's RPC cache: seeding and pruning hand every change in
it to the cache's owner (setpriv), as planned from a real worker's recorded cache."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from recordings import recorded_lines, words

from llamafleet.operations import Feed, Shell
from llamafleet.operations.base import Facts
from llamafleet.roles.model import cachedir, seed

# Commands that change what a path names (or what it holds); root may run them on its own files only.
CHANGING = {"mv", "cp", "ln", "rm", "chown", "chmod", "touch", "tee", "head", "mktemp", "dd", "truncate", "install"}
OWNER = ["setpriv", "--reuid=${o%:*}", "--regid=${o#*:}", "--clear-groups", "--no-new-privs", "--"]


def shell_words(script: str) -> list[str]:
    """A script's words as sh reads them (`$#` is no comment), with ; && | > as words of their own."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    return list(lexer)


def split_at_owner(script: str) -> tuple[list[str], list[str]]:
    """(root's words, the owner's words) of a cache script: the owner's part starts at `exec setpriv`."""
    tokens = shell_words(script)
    at = next((i for i in range(len(tokens)) if tokens[i : i + 2] == ["exec", "setpriv"]), len(tokens))
    return tokens[:at], tokens[at + 1 :]


def changes_by_root(tokens: list[str]) -> list[str]:
    """Commands and redirections in root's part that could change a file in the cache."""
    found = []
    for index, token in enumerate(tokens):
        before = tokens[index - 1] if index else ";"
        if token in CHANGING and before in (";", "&&", "||", "{", "then", "do", "(", "!", "|"):
            found.append(token)
        if token in (">", ">>", "<>") and tokens[index + 1 : index + 2] != ["/dev/null"]:
            found.append(f"{token} {tokens[index + 1]}")
    return found


def test_root_only_makes_a_missing_cache_then_the_owner_writes_every_entry():
    root, owner = split_at_owner(words(cachedir.write_command("/var/cache/llamafleet/rpc", "llama", ["a", "1"]))[2])
    # `install -d` is root's, and only when nothing is at the path (its parent, /var/cache/llamafleet, is root's).
    assert changes_by_root(root) == ["install"]
    made = root.index("install")
    assert root[made - 10 : made] == ["[", "-e", "$d", "]", "||", "[", "-L", "$d", "]", "||"]
    assert owner[: len(OWNER)] == OWNER
    assert owner[len(OWNER) : len(OWNER) + 3] == ["sh", "-c", cachedir.WRITER]


def test_root_removes_nothing_from_the_cache_itself():
    root, owner = split_at_owner(words(cachedir.remove_command("/var/cache/llamafleet/rpc", ["0123456789abcdef"]))[2])
    assert changes_by_root(root) == []
    assert owner[: len(OWNER)] == OWNER and "rm" in shell_words(owner[len(OWNER) + 2])


def test_the_owners_writer_renames_only_a_complete_regular_file_of_its_own_making():
    writer = shell_words(cachedir.WRITER)
    assert writer[:6] == ["set", "-e", ";", "umask", "077", ";"]
    moved = writer.index("mv")
    checks = " ".join(writer[writer.index("mktemp") : moved])
    assert "[ -f $t ] && [ ! -L $t ]" in checks and "[ $got -eq $s ]" in checks
    assert writer[moved : moved + 5] == ["mv", "-fT", "--", "$t", "$n"], "a directory planted at the name is refused"
    # The name may be swapped for a link between that check and the rename: what was renamed is checked again.
    after = writer[moved:]
    assert after[after.index("whole") : after.index("whole") + 3] == ["whole", "$n", "$s"]
    defined = writer[writer.index("whole") : writer.index("while")]
    assert " ".join(defined) == "whole () { [ -f $1 ] && [ ! -L $1 ] && [ $(stat -c %s -- $1) -eq $2 ] ; } ;"


class Mid:
    name, sha256 = "mid.gguf", "37ecdc0852700caf467df205926d7430850001f349bb07ff7cdfe57c46018106"


def recorded_entries(source: Path) -> tuple[seed.Entry, ...]:
    lines = recorded_lines("model/rpc_cache_listing_w1.txt")
    return tuple(seed.Entry(line.split()[0], source, 1000 * i, int(line.split()[1])) for i, line in enumerate(lines))


def planned(operation, *values) -> list:
    result = operation.plan(Facts({f.key: v for f, v in zip(operation.facts, values, strict=True)}))
    return list(getattr(result, "steps", ()))


@pytest.mark.parametrize("keep", [1, 2])
def test_every_step_of_seeding_and_pruning_that_touches_the_cache_runs_as_its_owner(tmp_path, keep):
    every = recorded_entries(tmp_path / "mid.gguf")
    state = [*recorded_lines("model/rpc_cache_state_w1.txt"), "@" + "e" * 64, *(e.name for e in every[9:])]
    extra = seed.Entry("00000000000000ff", tmp_path / "mid.gguf", 77, 11 << 20)
    steps = planned(
        seed.seeded(Mid, (*every[:9], extra), "llama"), recorded_lines("model/rpc_cache_listing_w1.txt"), None
    )
    steps += planned(seed.cache_pruned(Mid, every[:9], keep, 1), state)
    touching = [s for s in steps if isinstance(s, (Shell, Feed)) and seed.CACHE in s.command]
    assert len(touching) == 2, [type(s).__name__ for s in steps]
    for step in touching:
        root, owner = split_at_owner(words(step.command)[2])
        assert owner[: len(OWNER)] == OWNER, step.command[:200]
        assert changes_by_root(root) in ([], ["install"])
