"""provision converges a release whose files drifted from the artifact: role llama_cpp's staged() planner."""

from __future__ import annotations

import json
from pathlib import Path

from llama_cpp_samples import group_of, settings
from recordings import RECORDED, recorded_lines

from llamafleet.facts import FileState
from llamafleet.operations.base import Change, Facts, NoChange, Upload
from llamafleet.roles.llama_cpp import artifacts, install, targets

RELEASE = "b11434-cpu-374e3cb274cd"
# w1's running release as verify read it from a served lab (BUILD.json, then sha256sum of its files).
IDENTITY = recorded_lines(RECORDED / "verify" / "w1_identity.txt")


def target() -> targets.Target:
    manifest = json.loads("\n".join(IDENTITY).partition("@@files")[0])
    artifact = artifacts.Artifact(Path("/cache/artifact.tar.gz"), "a" * 64, manifest, "b" * 64)
    wanted = settings()
    installed = {RELEASE: "b" * 64}
    return targets.Target(None, wanted, group_of(wanted), "c" * 64, "374e3cb274cd", RELEASE, installed, artifact)


def planned(identity_lines: list[str], current: str = f"releases/{RELEASE}"):
    operation = install.staged(target())
    manifest, link, identity = operation.facts
    values = {
        manifest.key: FileState("file", 0o644, "root", "root", 1, "b" * 64),
        link.key: FileState("link", 0o777, "root", "root", 32, None, current),
        identity.key: identity_lines,
    }
    return operation.plan(Facts(values))


SWAPPED = [
    line if not line.endswith("./bin/ggml-rpc-server") else f"{'0' * 64}  ./bin/ggml-rpc-server" for line in IDENTITY
]


def test_an_intact_release_changes_nothing():
    assert isinstance(planned(IDENTITY), NoChange)


def test_a_replaced_binary_is_named_and_the_release_reinstalled():
    assert SWAPPED != IDENTITY
    change = planned(SWAPPED)
    assert isinstance(change, Change)
    assert change.reason == "files differ from the artifact, reinstalled: bin/ggml-rpc-server"
    assert any(isinstance(step, Upload) and step.path.endswith(f"llama.cpp-{RELEASE}.tar.gz") for step in change.steps)


def test_a_release_that_is_not_running_is_judged_by_its_build_json_only():
    # IDENTITY describes `current`: when current is another release, it says nothing about this one.
    assert isinstance(planned(SWAPPED, current="releases/b11433-cpu-000000000000"), NoChange)
