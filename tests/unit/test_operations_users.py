"""users.system_user and created_user_absent: the service account, planned from recorded passwd entries."""

from __future__ import annotations

import pytest
from planning import commands_of, parsed, plan
from recordings import words

from llamafleet import facts
from llamafleet.errors import OperationError
from llamafleet.operations import Change, NoChange, users


def test_a_missing_system_user_is_created_without_login_or_home():
    result = plan(users.system_user("llama"), parsed(facts.Passwd("x"), "passwd_missing.txt"))
    assert result.reason == "missing"
    assert words(commands_of(result)[0]) == [
        "useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
        "--shell", "/usr/sbin/nologin", "--comment", "llamafleet service user", "--", "llama",
    ]  # fmt: skip


def test_system_user_created_by_llamafleet_is_left_alone():
    result = plan(users.system_user("llama"), parsed(facts.Passwd("x"), "passwd_llamafleet.txt"))
    assert result == NoChange("system user exists (uid 998)")


def test_system_user_created_by_llamafleet_gets_its_shell_back():
    result = plan(users.system_user("llama"), parsed(facts.Passwd("x"), "passwd_llamafleet_shell.txt"))
    assert result.reason == "shell is /bin/bash"
    assert words(commands_of(result)[0]) == ["usermod", "--shell", "/usr/sbin/nologin", "--", "llama"]


@pytest.mark.parametrize("recorded_entry", ["passwd_nobody.txt", "passwd_www_data.txt"])
def test_existing_system_account_is_used_but_never_modified(recorded_entry):
    result = plan(users.system_user("x"), parsed(facts.Passwd("x"), recorded_entry))
    assert isinstance(result, NoChange), result
    assert "not created by llamafleet" in result.reason


@pytest.mark.parametrize(("recorded_entry", "kind"), [("passwd_root.txt", "root"), ("passwd_alice.txt", "uid 1000")])
def test_root_and_normal_accounts_are_refused_never_changed(recorded_entry, kind):
    with pytest.raises(OperationError, match=f"llamafleet_user: .*{kind}.*system account of their own"):
        plan(users.system_user("x"), parsed(facts.Passwd("x"), recorded_entry))


@pytest.mark.parametrize(
    ("recorded_entry", "removed"),
    [
        ("passwd_llamafleet.txt", True),
        ("passwd_www_data.txt", False),
        ("passwd_alice.txt", False),
        ("passwd_missing.txt", False),
    ],
)
def test_only_the_account_llamafleet_created_is_removed(recorded_entry, removed):
    result = plan(users.created_user_absent("llama"), parsed(facts.Passwd("x"), recorded_entry))
    assert isinstance(result, Change) == removed
    if removed:
        assert commands_of(result) == ["userdel -- llama"]
