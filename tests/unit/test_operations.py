"""Operations planned from recorded facts: the commands they would run, or why nothing is needed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from recordings import recorded_lines, words

from llamafleet import facts
from llamafleet.errors import OperationError
from llamafleet.facts import FileState
from llamafleet.operations import (
    Change,
    Facts,
    NoChange,
    Operation,
    Shell,
    Upload,
    commands,
    files,
    packages,
    systemd,
    users,
)

RECORDED = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "recorded"
APP_CONF = "name=w1\nport=50052\n"
ODD_PATH = "/srv/llama models; rm -rf x"  # a path from YAML: must stay one shell word


def recorded(name: str) -> list[str]:
    return recorded_lines(RECORDED / name)


def parsed(fact: facts.Fact, name: str):
    """The value a host gave for `fact`, from a recorded output."""
    return fact.process(recorded(name))


def plan(operation: Operation, *values):
    """Plan `operation` with one value per fact it asked for, in order."""
    assert len(values) == len(operation.facts)
    return operation.plan(Facts({f.key: v for f, v in zip(operation.facts, values)}))


def commands_of(change: Change) -> list[str]:
    assert isinstance(change, Change), change
    return [step.command for step in change.steps]


FILE = parsed(facts.PathInfo("/x"), "pathinfo_file.txt")  # app.conf, 0640 root:root
DIRECTORY = parsed(facts.PathInfo("/x"), "pathinfo_directory.txt")  # 0750 root:root
SYMLINK = parsed(facts.PathInfo("/x"), "pathinfo_symlink.txt")  # -> /tmp/llamafleet-facts/releases
MISSING = parsed(facts.PathInfo("/x"), "pathinfo_missing.txt")


# --------------------------------------------------------------------------- files.directory


def test_directory_asks_for_pathinfo_without_checksum():
    assert [f.key for f in files.directory("/opt/llama").facts] == [facts.PathInfo("/opt/llama", False).key]


def test_directory_missing():
    result = plan(files.directory(ODD_PATH, mode="0750", owner="llama", group="llama"), MISSING)
    assert result.reason == "missing"
    assert [words(c) for c in commands_of(result)] == [
        ["install", "-d", "-m", "0750", "-o", "llama", "-g", "llama", ODD_PATH]
    ]


def test_directory_right():
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
def test_directory_mode_or_owner_differ(mode, owner, expected):
    result = plan(files.directory(ODD_PATH, mode=mode, owner=owner, group="root"), DIRECTORY)
    assert result.reason == "mode or owner differ"
    assert [words(c) for c in commands_of(result)] == expected


def test_directory_where_a_file_is():
    result = plan(files.directory(ODD_PATH), FILE)
    assert result.reason == "is a file, not a directory"
    assert words(commands_of(result)[0]) == [
        "rm", "-f", ODD_PATH, "&&", "install", "-d", "-m", "0755", "-o", "root", "-g", "root", ODD_PATH,
    ]  # fmt: skip


# --------------------------------------------------------------------------- files.file


def test_file_asks_for_pathinfo_with_checksum():
    assert [f.key for f in files.file("/etc/x", "y").facts] == [facts.PathInfo("/etc/x", True).key]


def test_file_same_content_by_sha256():
    digest = hashlib.sha256(APP_CONF.encode()).hexdigest()
    result = plan(files.file("/etc/app.conf", APP_CONF, mode="0640"), FILE)
    assert result == NoChange(f"content sha256 {digest[:12]} matches, 0640 root:root")


def test_file_content_differs():
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


def test_secret_file_hides_its_content():
    operation = files.file("/etc/llama/api.key", "sk-very-secret\n", mode="0600", secret=True)
    assert operation.sensitive
    result = plan(operation, FILE)
    assert result.secret is True
    assert result.new_text is None
    assert "sk-very-secret" not in repr(replace(result, steps=()))
    assert result.steps[0].content == b"sk-very-secret\n"


def test_file_mode_differs_only():
    result = plan(files.file(ODD_PATH, APP_CONF, mode="0644"), FILE)
    assert result.reason == "mode or owner differ"
    assert [words(c) for c in commands_of(result)] == [["chmod", "0644", ODD_PATH]]
    assert result.diff_path is None, "no content diff when only the mode changes"


def test_copy_compares_the_known_sha256(tmp_path):
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


def test_symlink_right():
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


def test_absent():
    assert plan(files.absent("/x"), MISSING) == NoChange("absent")
    result = plan(files.absent(ODD_PATH), FILE)
    assert result.reason == "a file exists"
    assert words(commands_of(result)[0]) == ["rm", "-rf", "--", ODD_PATH]


# --------------------------------------------------------------------------- packages


DEB_INSTALLED = parsed(facts.DebPackages(["x"]), "debpackages.txt")  # bash, coreutils, libc6
RPM_INSTALLED = parsed(facts.RpmPackages(["x"]), "rpm_packages.txt")  # openssl, procps-ng


def test_packages_debian_present():
    operation = packages.present(["coreutils", "bash", "bash"], "debian")
    assert [f.key for f in operation.facts] == [facts.DebPackages(["bash", "coreutils"]).key]
    assert plan(operation, DEB_INSTALLED) == NoChange("installed: bash, coreutils")


def test_packages_debian_missing():
    result = plan(packages.present(["bash", "openssl", "procps"], "debian"), DEB_INSTALLED)
    assert result.reason == "missing: openssl, procps"
    [command] = commands_of(result)
    apt = ["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", "--"]
    assert words(command) == [
        *apt, "openssl", "procps", "||", "{", "apt-get", "update", "-q", "&&", *apt, "openssl", "procps", ";", "}",
    ]  # fmt: skip


def test_packages_redhat():
    operation = packages.present(["openssl", "procps-ng", "iproute"], "redhat")
    assert [f.key for f in operation.facts] == [facts.RpmPackages(["iproute", "openssl", "procps-ng"]).key]
    result = plan(operation, RPM_INSTALLED)
    assert result.reason == "missing: iproute"
    assert words(commands_of(result)[0]) == ["dnf", "install", "-y", "-q", "--", "iproute"]
    assert plan(packages.present(["openssl"], "redhat"), RPM_INSTALLED) == NoChange("installed: openssl")


def test_package_names_are_quoted():
    result = plan(packages.present(["a b;c"], "debian"), {})
    assert words(commands_of(result)[0]).count("a b;c") == 2


@pytest.mark.parametrize("family", ["unknown", "suse", ""])
def test_packages_unknown_family(family):
    with pytest.raises(OperationError, match=f"no package manager known for OS family '{family}'"):
        packages.present(["bash"], family)
    with pytest.raises(OperationError):
        packages.install_command(family, ["bash"])


# --------------------------------------------------------------------------- users


def test_system_user_missing():
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


def test_package_names_follow_end_of_options():
    install = words(packages.install_command("debian", ["-oAPT::Get=x"]))
    assert install[install.index("--") + 1] == "-oAPT::Get=x"
    assert words(packages.install_command("redhat", ["-y"]))[-2:] == ["--", "-y"]
    assert words(facts.DebPackages(["-x"]).command())[-2:] == ["--", "-x"]
    assert words(facts.RpmPackages(["-x"]).command())[-2:] == ["--", "-x"]


# --------------------------------------------------------------------------- systemd


def unit(name: str) -> dict:
    return parsed(facts.SystemdUnit("x"), name)


def test_service_needs_enable_and_start():
    result = plan(systemd.service("llama-rpc.service"), unit("systemctl_show_inactive_disabled.txt"))
    assert commands_of(result) == ["systemctl enable llama-rpc.service", "systemctl start llama-rpc.service"]
    assert result.reason == "unit file state disabled, state inactive"


def test_service_already_fine():
    result = plan(systemd.service("llama-rpc.service"), unit("systemctl_show_active_enabled.txt"))
    assert result == NoChange("active, enabled")


def test_service_static_unit_counts_as_enabled():
    assert isinstance(plan(systemd.service("systemd-journald.service"), unit("systemctl_show_static.txt")), NoChange)


def test_service_stop_and_disable():
    result = plan(
        systemd.service("llama-rpc.service", running=False, enabled=False), unit("systemctl_show_active_enabled.txt")
    )
    assert commands_of(result) == ["systemctl disable llama-rpc.service", "systemctl stop llama-rpc.service"]
    off = plan(
        systemd.service("llama-rpc.service", running=False, enabled=False), unit("systemctl_show_inactive_disabled.txt")
    )
    assert off == NoChange("inactive, disabled")


def test_service_whose_unit_is_not_loaded_yet_is_enabled_and_started():
    # Its unit file is usually written earlier in the same run (or would be, in check mode).
    result = plan(systemd.service("llama rpc.service"), unit("systemctl_show_not_found.txt"))
    assert result.reason == "unit not-found yet"
    assert [words(c) for c in commands_of(result)] == [
        ["systemctl", "enable", "llama rpc.service"],
        ["systemctl", "start", "llama rpc.service"],
    ]


def test_service_name_is_quoted():
    result = plan(systemd.service("x; reboot"), unit("systemctl_show_inactive_disabled.txt"))
    assert [words(c) for c in commands_of(result)] == [
        ["systemctl", "enable", "x; reboot"],
        ["systemctl", "start", "x; reboot"],
    ]


def test_unit_file_change_adds_daemon_reload():
    content = "[Service]\nExecStart=/opt/llama.cpp/current/bin/rpc-server\n"
    operation = systemd.unit_file("llama-rpc.service", content, notify=("restart llama-rpc",))
    assert operation.notify == ("restart llama-rpc",)
    assert [f.key for f in operation.facts] == [facts.PathInfo("/etc/systemd/system/llama-rpc.service").key]
    result = plan(operation, FILE)
    assert result.steps == (
        Upload("/etc/systemd/system/llama-rpc.service", content.encode(), "0644", "root", "root"),
        Shell("systemctl daemon-reload"),
    )
    assert (result.diff_path, result.new_text) == ("/etc/systemd/system/llama-rpc.service", content)


def test_unit_file_unchanged_needs_no_reload():
    operation = systemd.unit_file("app.service", APP_CONF)
    assert isinstance(plan(operation, replace(FILE, mode=0o644)), NoChange)


def test_restarted_is_not_idempotent():
    operation = systemd.restarted("llama-rpc.service")
    assert operation.idempotent is False
    assert commands_of(plan(operation)) == ["systemctl restart llama-rpc.service"]


# --------------------------------------------------------------------------- commands.run


def test_run_with_creates():
    operation = commands.run("build", "make -C /src", creates="/opt/llama.cpp/releases/b1/bin")
    assert operation.idempotent is True
    assert [f.key for f in operation.facts] == [facts.PathInfo("/opt/llama.cpp/releases/b1/bin", False).key]
    assert plan(operation, DIRECTORY) == NoChange("/opt/llama.cpp/releases/b1/bin exists")
    result = plan(operation, MISSING)
    assert commands_of(result) == ["make -C /src"]
    assert result.reason == "/opt/llama.cpp/releases/b1/bin missing"


def test_run_without_creates_says_it_is_not_idempotent():
    operation = commands.run("note", "echo x")
    assert operation.idempotent is False
    assert operation.facts == []
    assert plan(operation) == Change((Shell("echo x"),), "runs every time")


def test_file_state_from_recorded_file_is_what_operations_compare():
    # A guard on the fixtures themselves: the planner tests above rely on these values.
    assert FileState("file", 0o640, "root", "root", 19, hashlib.sha256(APP_CONF.encode()).hexdigest()) == FILE
    assert (DIRECTORY.type, DIRECTORY.mode) == ("directory", 0o750)
    assert MISSING is None


# --------------------------------------------------------------------------- teardown


@pytest.mark.parametrize(
    ("recorded_unit", "recorded_file", "commands"),
    [
        (
            "systemctl_show_active_enabled.txt",
            "pathinfo_file.txt",
            [
                "systemctl disable --now llama-rpc.service || systemctl stop llama-rpc.service",
                "rm -f -- /etc/systemd/system/llama-rpc.service",
                "systemctl daemon-reload",
                "systemctl reset-failed llama-rpc.service 2>/dev/null || true",
            ],
        ),
        # Written but never loaded (no daemon-reload yet): the file still goes.
        (
            "systemctl_show_not_found.txt",
            "pathinfo_file.txt",
            [
                "rm -f -- /etc/systemd/system/llama-rpc.service",
                "systemctl daemon-reload",
                "systemctl reset-failed llama-rpc.service 2>/dev/null || true",
            ],
        ),
    ],
)
def test_service_absent_stops_disables_and_removes(recorded_unit, recorded_file, commands):
    result = plan(systemd.service_absent("llama-rpc.service"), unit(recorded_unit), FILE)
    assert commands_of(result) == commands


def test_service_absent_when_nothing_is_there():
    result = plan(systemd.service_absent("llama-rpc.service"), unit("systemctl_show_not_found.txt"), MISSING)
    assert isinstance(result, NoChange) and result.reason == "no such unit"


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
