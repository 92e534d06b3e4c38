"""teardown --purge never crosses a mount point: planned from the purge fact's real output on a lab worker
(tests/fixtures/recorded/teardown/record.py: a shared folder bind-mounted at /var/lib/llamafleet/models,
a tmpfs inside it, a tmpfs at `/var/cache/llamafleet/with space`)."""

from __future__ import annotations

from recordings import recorded_lines, words

from llamafleet.operations import Change, Facts, NoChange
from llamafleet.roles.teardown import purge, role

FACT = purge.TreesLeft(role.PURGED)
KEPT = ["/var/cache/llamafleet/with space", "/var/lib/llamafleet/models"]


def planned(state: str):
    operation = purge.trees_absent(role.PURGED)
    return operation.plan(Facts({FACT.key: FACT.process(recorded_lines(f"teardown/trees_{state}.txt"))}))


def removed(change) -> list[str]:
    assert isinstance(change, Change), change
    [step] = change.steps
    assert words(step.command)[:4] == ["rm", "-rf", "--one-file-system", "--"]
    return words(step.command)[4:]


def test_trees_without_mounts_go_whole():
    result = planned("provisioned")
    assert removed(result) == ["/etc/llamafleet", "/opt/llama.cpp", "/var/cache/llamafleet", "/var/lib/llamafleet"]
    assert result.reason == "4 path(s) to remove"


def test_mount_points_inside_the_trees_are_left_with_their_files_and_named():
    found = FACT.process(recorded_lines("teardown/trees_mounted.txt"))
    assert "/var/cache/llamafleet/with space" in found.mounts  # mountinfo's \040 read back as a space
    assert "/var/lib/llamafleet/models/sub" in found.mounts  # a mount inside the bind mount
    result = planned("mounted")
    # the bind mount shares the overlay's device: only mountinfo tells it apart; rpc/ beside the mounts goes
    assert removed(result) == ["/etc/llamafleet", "/opt/llama.cpp", "/var/cache/llamafleet/rpc"]
    assert result.reason == "3 path(s) to remove; " + purge.left_line(KEPT)
    assert purge.left_line(KEPT).startswith(f"warning: left {', '.join(KEPT)}: mount point(s), another filesystem")


def test_a_purge_with_the_mounts_still_there_changes_nothing_and_says_so_again():
    assert planned("purged") == NoChange(purge.left_line(KEPT))
    assert purge.trees_absent(role.PURGED).plan(Facts({FACT.key: FACT.process([])})) == NoChange("absent")


def test_entries_outside_the_directories_leading_to_a_mount_are_never_removed():
    lines = recorded_lines("teardown/trees_mounted.txt") + [
        "entry /etc",  # as a file name holding a newline would print it
        "entry /var/lib/llamafleet/models/../../../../etc",
        "entry /var/lib/llamafleet/models/sub/x",  # inside a mount
        "entry relative",
    ]
    remove, kept = purge.removal(FACT.process(lines))
    assert remove == ["/etc/llamafleet", "/opt/llama.cpp", "/var/cache/llamafleet/rpc"] and kept == KEPT


def test_a_directory_between_two_mounts_is_inside_the_outer_one_and_stays():
    trees = purge.Trees(("/t",), ("/t/m", "/t/m/x/y"), ("/t/m", "/t/other", "/t/m/x", "/t/m/x/y", "/t/m/x/z"))
    assert purge.removal(trees) == (["/t/other"], ["/t/m"])


def test_the_fact_reads_mountinfo_and_quotes_the_trees():
    command = purge.TreesLeft(("/var/lib/llamafleet", "/odd dir")).command()
    assert "/proc/self/mountinfo" in command and "'/odd dir'" in command
    assert "printf '%b'" in command  # octal escapes of mountinfo decoded
