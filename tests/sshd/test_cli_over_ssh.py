"""The command line against a real sshd: provision --check plans without changing, status reads, exit 3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import sshd_server
from command_line import invoke

# A source the controller does not hold: the check plans a build without downloading anything.
PINNED_SOURCE = ["-e", "llama_cpp_version=b11434", "-e", "llama_cpp_source_sha256=" + "ab" * 32]
ROLES = {"base", "llama_cpp", "release", "firewall", "tunnel", "head"}  # provision's phases (the tunnel: kept down)


def check_provision(inventory_file: Path) -> tuple[int, dict]:
    """`invoke provision --check --json` on the inventory: (exit status, the JSON document)."""
    result = invoke("provision", "-i", str(inventory_file), "--check", "--json", *PINNED_SOURCE)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def assert_planned_and_left_alone(code: int, doc: dict) -> None:
    """Exit 0, every role planned changes or said why not, and each directory planned as missing still is."""
    __tracebackhide__ = True
    failed = [r for r in doc["results"] if r["status"] == "failed"]
    assert (code, doc["exit_code"], failed) == (0, 0, []), "a check of a host it can reach succeeds"
    assert doc["check"] is True
    recap = doc["recap"]["local"]
    assert set(recap) == {"ok", "changed", "failed", "unreachable", "skipped"}
    assert (recap["failed"], recap["unreachable"]) == (0, 0) and recap["changed"] > 0, recap
    assert {r["role"] for r in doc["results"]} == ROLES
    built = [r for r in doc["results"] if r["operation"].startswith("llama.cpp b11434 built for ")]
    assert [r["status"] for r in built] == ["changed"], "the build of a source no host holds is planned"
    directories = [r for r in doc["results"] if r["operation"].startswith("directory ")]
    missing = [r["operation"].removeprefix("directory ") for r in directories if r["reason"] == "missing"]
    assert missing, "a fresh host misses directories of llamafleet"
    assert not [path for path in missing if Path(path).exists()], "--check created a directory"


def test_provision_check_plans_every_role_and_changes_nothing(sshd, tmp_path):
    inventory_file = sshd.write_inventory(tmp_path / "hosts.yml")
    key = tmp_path / "hosts.api-key"  # the API key a first provision made, beside the inventory
    key.write_text("lf-made-by-an-earlier-provision\n")
    code, doc = check_provision(inventory_file)
    assert_planned_and_left_alone(code, doc)
    head = [r for r in doc["results"] if r["role"] == "head"]
    assert ("file /etc/llamafleet/api-key", "changed") in [(r["operation"], r["status"]) for r in head]
    assert "lf-made-by-an-earlier-provision" not in json.dumps(doc), "the key is never shown"


def test_provision_check_before_any_api_key_plans_it_and_makes_none(sshd, tmp_path):
    code, doc = check_provision(sshd.write_inventory(tmp_path / "hosts.yml"))
    assert not (tmp_path / "hosts.api-key").exists(), "--check made the API key"
    assert_planned_and_left_alone(code, doc)


def test_status_reports_the_host_s_os_release_and_service(sshd, tmp_path):
    result = invoke("status", "-i", str(sshd.write_inventory(tmp_path / "hosts.yml")), "--json")
    assert result.returncode == 0, result.stderr
    host = json.loads(result.stdout)["hosts"]["local"]
    os_release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    assert host["os"].split()[0] == os_release["ID"].strip('"') and host["os"].split()[-1] == os.uname().machine
    assert host["release"] == (
        Path("/opt/llama.cpp/current").resolve().name if Path("/opt/llama.cpp/current").exists() else None
    )
    # Nothing of llamafleet runs on this host: the service is absent, the API does not answer.
    assert (host["state"], host["health"], host["reachable"]) == ("absent", "not answering", True)


def test_an_unreachable_host_is_one_line_and_exit_3(sshd, tmp_path):
    closed = sshd_server.free_port()
    inventory_file = sshd.write_inventory(tmp_path / "hosts.yml", ansible_port=closed)
    result = invoke("provision", "-i", str(inventory_file), "--check", *PINNED_SOURCE)
    assert result.returncode == 3
    assert f"cannot connect to 127.0.0.1:{closed}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
