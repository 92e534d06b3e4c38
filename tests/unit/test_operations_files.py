"""files.directory, file, copy, symlink and absent: planned from a path's recorded state."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import replace

import pytest
from planning import APP_CONF, DIRECTORY, FILE, MISSING, ODD_PATH, SYMLINK, commands_of, plan
from recordings import words

from llamafleet import facts
from llamafleet.facts import FileState
from llamafleet.operations import NoChange, Upload, files

# --------------------------------------------------------------------------- files.directory


def test_directory_asks_for_pathinfo_without_checksum():
    assert [f.key for f in files.directory("/opt/llama").facts] == [facts.PathInfo("/opt/llama", False).key]


def test_a_missing_directory_is_installed_with_its_mode_and_owner():
    result = plan(files.directory(ODD_PATH, mode="0750", owner="llama", group="llama"), MISSING)
    assert result.reason == "missing"
    assert [words(c) for c in commands_of(result)] == [
        ["install", "-d", "-m", "0750", "-o", "llama", "-g", "llama", ODD_PATH]
    ]


def test_a_directory_as_wanted_needs_nothing():
    result = plan(files.directory("/tmp/llamafleet-facts/releases", mode="0750"), DIRECTORY)
    assert result == NoChange("directory exists, 0750 root:root")


@pytest.mark.parametrize(
    ("mode", "owner", "expected"),
    [
        ("0755", "root", [["chmod", "0755", ODD_PATH]]),
        ("750", "llama", [["chown", "llama:root", ODD_PATH]]),
        ("0700", "llama", [["chmod", "0700", ODD_PATH], ["chown", "llama:root", ODD_PATH]]),
    ],
)
def test_a_directory_s_mode_or_owner_alone_is_fixed(mode, owner, expected):
    result = plan(files.directory(ODD_PATH, mode=mode, owner=owner, group="root"), DIRECTORY)
    assert result.reason == "mode or owner differ"
    assert [words(c) for c in commands_of(result)] == expected


def test_a_file_where_a_directory_belongs_is_replaced():
    result = plan(files.directory(ODD_PATH), FILE)
    assert result.reason == "is a file, not a directory"
    assert words(commands_of(result)[0]) == [
        "rm", "-f", ODD_PATH, "&&", "install", "-d", "-m", "0755", "-o", "root", "-g", "root", ODD_PATH,
    ]  # fmt: skip


# --------------------------------------------------------------------------- files.file


def test_file_asks_for_pathinfo_with_checksum():
    assert [f.key for f in files.file("/etc/x", "y").facts] == [facts.PathInfo("/etc/x", True).key]


def test_a_file_with_the_same_sha256_needs_nothing():
    digest = hashlib.sha256(APP_CONF.encode()).hexdigest()
    result = plan(files.file("/etc/app.conf", APP_CONF, mode="0640"), FILE)
    assert result == NoChange(f"content sha256 {digest[:12]} matches, 0640 root:root")


def test_a_file_whose_content_differs_is_uploaded_with_a_diff():
    new = APP_CONF.replace("50052", "50053")
    result = plan(files.file(ODD_PATH, new, mode="0640", owner="llama", group="llama"), FILE)
    assert result.reason == "content differs"
    assert result.steps == (Upload(ODD_PATH, new.encode(), "0640", "llama", "llama"),)
    assert (result.diff_path, result.new_text, result.secret) == (ODD_PATH, new, False)


def test_file_missing_is_uploaded_as_bytes():
    result = plan(files.file("/etc/app.conf", b"\x00\xffbinary"), MISSING)
    assert result.reason == "missing"
    assert result.steps[0].content == b"\x00\xffbinary"


def test_file_where_a_directory_is_fails_instead_of_deleting_it():
    result = plan(files.file("/etc/app.conf", APP_CONF), DIRECTORY)
    assert result.reason == "is a directory"
    assert not any(isinstance(step, Upload) for step in result.steps)
    assert "exit 1" in result.steps[0].command


def test_a_secret_file_s_change_holds_its_content_only_in_the_upload():
    operation = files.file("/etc/llama/api.key", "sk-very-secret\n", mode="0600", secret=True)
    result = plan(operation, FILE)
    assert result.secret is True
    assert result.new_text is None
    assert "sk-very-secret" not in repr(replace(result, steps=()))
    assert result.steps[0].content == b"sk-very-secret\n"


def test_a_file_s_mode_alone_is_fixed_without_upload_or_diff():
    result = plan(files.file(ODD_PATH, APP_CONF, mode="0644"), FILE)
    assert result.reason == "mode or owner differ"
    assert [words(c) for c in commands_of(result)] == [["chmod", "0644", ODD_PATH]]
    assert result.diff_path is None, "no content diff when only the mode changes"


def test_a_copy_is_uploaded_only_when_the_known_sha256_differs(tmp_path):
    source = tmp_path / "model.gguf"
    source.write_text(APP_CONF)
    digest = files.source_sha256(source)
    assert digest == hashlib.sha256(APP_CONF.encode()).hexdigest()
    same = plan(files.copy("/m/model.gguf", source, digest, mode="0640"), FILE)
    assert same == NoChange(f"sha256 {digest[:12]} matches")
    other = plan(files.copy("/m/model.gguf", source, "0" * 64, mode="0640"), FILE)
    assert other.steps == (Upload("/m/model.gguf", source, "0640", "root", "root", "0" * 64),)
    assert other.reason == "content differs"


# --------------------------------------------------------------------------- files.symlink


def test_a_symlink_to_the_target_needs_nothing():
    operation = files.symlink("/tmp/llamafleet-facts/current", "/tmp/llamafleet-facts/releases")
    assert plan(operation, SYMLINK) == NoChange("points to /tmp/llamafleet-facts/releases")


@pytest.mark.parametrize(
    ("state", "reason"), [(SYMLINK, "points to /tmp/llamafleet-facts/releases"), (None, "missing")]
)
def test_symlink_wrong_or_missing_is_switched_atomically(state, reason):
    target = "/opt/llama.cpp/releases/b2 new"
    result = plan(files.symlink(ODD_PATH, target), state)
    assert result.reason == reason
    assert words(commands_of(result)[0]) == [
        "ln", "-sfn", target, f"{ODD_PATH}.lf-new", "&&", "mv", "-Tf", f"{ODD_PATH}.lf-new", ODD_PATH,
    ]  # fmt: skip


def test_symlink_switch_command_replaces_a_link_to_a_directory(tmp_path):
    # Run the planned command for real: without mv -T the new link would land inside old/.
    (tmp_path / "old").mkdir()
    (tmp_path / "new dir").mkdir()
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "old")
    state = facts.PathInfo(str(link), False)
    before = subprocess.run(["bash", "-c", state.command()], capture_output=True, text=True).stdout
    result = plan(files.symlink(str(link), str(tmp_path / "new dir")), state.process(before.splitlines()))
    subprocess.run(["bash", "-c", commands_of(result)[0]], check=True)
    assert os.readlink(link) == str(tmp_path / "new dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "new dir", "old"]
    assert list((tmp_path / "old").iterdir()) == []


def test_symlink_where_a_directory_is_fails():
    result = plan(files.symlink("/opt/x", "/opt/y"), DIRECTORY)
    run = subprocess.run(["bash", "-c", commands_of(result)[0]], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr == "/opt/x is a directory, not a symlink\n"


def test_absent_removes_whatever_is_at_the_path():
    assert plan(files.absent("/x"), MISSING) == NoChange("absent")
    result = plan(files.absent(ODD_PATH), FILE)
    assert result.reason == "a file exists"
    assert words(commands_of(result)[0]) == ["rm", "-rf", "--", ODD_PATH]


def test_the_recorded_states_are_the_ones_these_tests_assume():
    # A guard on the fixtures themselves: the planner tests above rely on these values.
    assert FileState("file", 0o640, "root", "root", 19, hashlib.sha256(APP_CONF.encode()).hexdigest()) == FILE
    assert (DIRECTORY.type, DIRECTORY.mode) == ("directory", 0o750)
    assert MISSING is None
