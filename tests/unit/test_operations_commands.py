"""commands.run: a command that is not a state runs every time, unless a path it creates exists."""

from __future__ import annotations

from planning import DIRECTORY, MISSING, commands_of, plan

from llamafleet import facts
from llamafleet.operations import Change, NoChange, Shell, commands


def test_run_with_creates_runs_only_while_the_path_is_missing():
    operation = commands.run("build", "make -C /src", creates="/opt/llama.cpp/releases/b1/bin")
    assert [f.key for f in operation.facts] == [facts.PathInfo("/opt/llama.cpp/releases/b1/bin", False).key]
    assert plan(operation, DIRECTORY) == NoChange("/opt/llama.cpp/releases/b1/bin exists")
    result = plan(operation, MISSING)
    assert commands_of(result) == ["make -C /src"]
    assert result.reason == "/opt/llama.cpp/releases/b1/bin missing"


def test_run_without_creates_reads_no_fact_and_runs_every_time():
    operation = commands.run("note", "echo x")
    assert operation.facts == [], "nothing on the host can say it is done"
    assert plan(operation) == Change((Shell("echo x"),), "runs every time")
