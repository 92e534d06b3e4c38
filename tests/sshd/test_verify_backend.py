"""verify's testinfra backend over the engine's connection: testinfra modules work, as root through sudo."""

from __future__ import annotations

from llamafleet.verify.backend import engine_host


def test_testinfra_modules_run_through_the_engine_as_root(become_inventory, connect):
    host = engine_host(connect(become_inventory, base_dir=become_inventory.parent))
    assert host.run("id -u").stdout.strip() == "0", "sudo, as provision does"
    assert host.file("/etc/passwd").user == "root"
    assert host.file("/etc/shadow").exists and host.file("/etc/shadow").mode & 0o004 == 0
    assert host.run_test("test -d %s", "/no such/dir").rc == 1
    before = host.backend.commands
    host.run("true")
    assert host.backend.commands == before + 1, "every command counted in verify's SSH commands per host"
