"""Files up and down as a non-root login user with ansible_become: byte for byte, and no password in them."""

from __future__ import annotations

import hashlib
import os

import pytest
from test_converge import converge, make_role, totals

from llamafleet import inventory
from llamafleet.errors import CommandError, OperationError

FILES = {
    "small.txt": b"name=local\n",
    "empty": b"",
    "binary.bin": bytes(range(256)) * 3 + b"\x00\r\n\xff",
    "large.bin": os.urandom(1536 * 1024),
}


def test_put_writes_exactly_the_bytes_sent(become_inventory, tmp_path, connect):
    conn = connect(become_inventory)
    for name, data in FILES.items():
        conn.put(data, str(tmp_path / name), mode="0640")
    source = tmp_path / "from-a-path.bin"
    source.write_bytes(FILES["large.bin"][:300_000])
    conn.put(source, str(tmp_path / "copied.bin"))
    for name, data in {**FILES, "copied.bin": source.read_bytes()}.items():
        written = tmp_path / name
        assert written.read_bytes() == data, f"{name}: {len(written.read_bytes())} bytes, expected {len(data)}"
        assert written.stat().st_uid == 0, f"{name} written as root"
    assert oct((tmp_path / "small.txt").stat().st_mode & 0o777) == "0o640"


def test_stdin_reaches_the_command_unchanged(become_inventory, connect):
    conn = connect(become_inventory)
    result = conn.check("id -u; cat", stdin=b"first line\nsecond\n")
    assert result.stdout == "0\nfirst line\nsecond\n"
    assert result.stderr == "", "sudo's prompt and the start marker are taken out of stderr"


def test_a_role_converges_as_root_and_a_second_run_changes_nothing(become_inventory, tmp_path):
    inv = inventory.load(become_inventory)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(3 * 1024 * 1024))
    base = tmp_path / "target"
    role = make_role(base, payload)
    code, output = converge(inv, role)
    assert code == 0, [r for r in output.results if r.status == "failed"]
    assert (base / "etc/app.conf").read_text() == "name=local\nport=1\n"
    assert (base / "payload.bin").read_bytes() == payload.read_bytes()
    assert (base / "etc/app.conf").stat().st_uid == 0
    code, second = converge(inv, role)
    assert (code, totals(second)) == (0, {"ok": 6, "changed": 0, "failed": 0, "unreachable": 0})


def test_get_reads_a_root_only_file(become_inventory, tmp_path, connect):
    secret = tmp_path / "root-only.bin"
    secret.write_bytes(os.urandom(700_000))
    secret.chmod(0o600)
    local = tmp_path / "fetched" / "copy.bin"
    expected = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert connect(become_inventory).get(str(secret), local, sha256=expected) == expected
    assert local.read_bytes() == secret.read_bytes()
    assert sorted(p.name for p in local.parent.iterdir()) == ["copy.bin"], "no temporary file left"


def test_get_with_the_wrong_sha256_leaves_nothing(become_inventory, tmp_path, connect):
    secret = tmp_path / "root-only.bin"
    secret.write_bytes(b"root only\n")
    secret.chmod(0o600)
    local = tmp_path / "fetched" / "copy.bin"
    with pytest.raises(OperationError, match="expected " + "0" * 64):
        connect(become_inventory).get(str(secret), local, sha256="0" * 64)
    assert list(local.parent.iterdir()) == []


def test_get_of_a_missing_file_fails_and_leaves_nothing(become_inventory, tmp_path, connect):
    local = tmp_path / "fetched" / "copy.bin"
    with pytest.raises(CommandError, match="No such file"):
        connect(become_inventory).get(str(tmp_path / "absent"), local)
    assert list(local.parent.iterdir()) == []
