"""systemd.service, unit_file, restarted and service_absent: planned from recorded systemctl output."""

from __future__ import annotations

from dataclasses import replace

import pytest
from planning import APP_CONF, FILE, MISSING, commands_of, parsed, plan
from recordings import words

from llamafleet import facts
from llamafleet.operations import NoChange, Shell, Upload, systemd


def unit(name: str) -> dict:
    return parsed(facts.SystemdUnit("x"), name)


def test_service_inactive_and_disabled_is_enabled_then_started():
    result = plan(systemd.service("llama-rpc.service"), unit("systemctl_show_inactive_disabled.txt"))
    assert commands_of(result) == ["systemctl enable llama-rpc.service", "systemctl start llama-rpc.service"]
    assert result.reason == "unit file state disabled, state inactive"


def test_service_active_and_enabled_needs_nothing():
    result = plan(systemd.service("llama-rpc.service"), unit("systemctl_show_active_enabled.txt"))
    assert result == NoChange("active, enabled")


@pytest.mark.parametrize("recorded", ["systemctl_show_inactive_disabled.txt", "systemctl_show_not_found.txt"])
def test_starting_a_service_withdraws_its_restart(recorded):
    """It starts on the unit file written before it: the restart that file notified has nothing left to do."""
    result = plan(systemd.service("llama-rpc.service", restarts=("restart llama-rpc",)), unit(recorded))
    assert result.done == ("restart llama-rpc",)


@pytest.mark.parametrize(
    ("recorded", "wanted"),
    [
        ("systemctl_show_active_enabled.txt", {"running": True, "enabled": False}),  # running already: only disabled
        ("systemctl_show_inactive_disabled.txt", {"running": False, "enabled": True}),  # enabled, not started
    ],
)
def test_a_service_change_that_starts_nothing_leaves_its_restart_pending(recorded, wanted):
    result = plan(systemd.service("llama-rpc.service", restarts=("restart llama-rpc",), **wanted), unit(recorded))
    assert commands_of(result) and result.done == ()


def test_service_static_unit_counts_as_enabled():
    assert isinstance(plan(systemd.service("systemd-journald.service"), unit("systemctl_show_static.txt")), NoChange)


def test_service_wanted_off_is_disabled_then_stopped():
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


def test_service_name_stays_one_shell_word():
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


def test_restarted_reads_no_fact_and_restarts_every_time():
    operation = systemd.restarted("llama-rpc.service")
    assert operation.facts == [], "nothing on the host can say it is done"
    assert commands_of(plan(operation)) == ["systemctl restart llama-rpc.service"]


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


def test_service_absent_with_no_unit_needs_nothing():
    result = plan(systemd.service_absent("llama-rpc.service"), unit("systemctl_show_not_found.txt"), MISSING)
    assert isinstance(result, NoChange) and result.reason == "no such unit"
