"""Resumable model transfers: hashed on the host as they stream, resumed after a cut, never renamed unless right."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from model_transfer import DATA, SHA, settled_part, transfer

from llamafleet import channel, openssh, ssh
from llamafleet.errors import CommandError, ConnectError


@pytest.fixture(params=["ssh", "paramiko"], autouse=True)
def carrier(request, monkeypatch) -> Iterator[str]:
    """Each test twice: the bulk data carried by the ssh program, then by paramiko (chosen before `conn` exists)."""
    if request.param == "paramiko":
        monkeypatch.setenv(openssh.BULK_ENV, "paramiko")
    connection = request.getfixturevalue("conn")
    yield request.param
    assert (connection.bulk_fallback is None) == (request.param == "ssh"), connection.bulk_fallback


class CutAfter:
    """A file that yields `limit` bytes and then closes the SSH connection (a link cut mid-transfer)."""

    def __init__(self, handle, limit: int, transport) -> None:
        self.handle, self.left, self.transport = handle, limit, transport

    def read(self, count: int) -> bytes:
        if self.left <= 0:
            self.transport.close()
            return b""
        data = self.handle.read(min(count, self.left))
        self.left -= len(data)
        return data


def test_a_transfer_lands_read_only_with_its_sha256_recorded(conn, where):
    conn.put_resumable(transfer(where))
    assert where["path"].read_bytes() == DATA
    assert oct(where["path"].stat().st_mode & 0o777) == "0o440"
    assert not where["partial"].exists()
    size, mtime, inode, ctime, sha = where["record"].read_text().split()
    stat = where["path"].stat()
    assert [int(size), int(mtime), int(inode), int(ctime)] == [
        stat.st_size, int(stat.st_mtime), stat.st_ino, int(stat.st_ctime)
    ]  # fmt: skip
    assert sha == SHA


def test_a_cut_transfer_keeps_its_part_and_resumes_without_resending(conn, where, monkeypatch):
    if conn.bulk_fallback is None:
        pytest.skip("the ssh program's stream: test_bulk_streams.py cuts its session")
    where["path"].write_bytes(b"the previous model\n")
    transport = conn.open().transport
    monkeypatch.setattr(ssh, "Limited", lambda handle, size: CutAfter(handle, 1024 * 1024, transport))
    with pytest.raises((ConnectError, CommandError)):
        conn.put_resumable(transfer(where))
    monkeypatch.undo()
    assert where["path"].read_bytes() == b"the previous model\n", "the target is never touched by a partial"
    arrived = settled_part(where["partial"])
    assert 0 < arrived <= 1024 * 1024 and where["partial"].read_bytes() == DATA[:arrived]
    sent = _counting(monkeypatch)
    conn.put_resumable(transfer(where, offset=arrived))
    assert where["path"].read_bytes() == DATA
    assert sent["bytes"] == len(DATA) - arrived, "only what had not arrived was sent again"


def test_a_damaged_part_is_removed_and_the_target_left_alone(conn, where):
    where["path"].write_bytes(b"the previous model\n")
    where["partial"].write_bytes(b"X" * 1000)  # not the first 1000 bytes of DATA
    with pytest.raises(CommandError, match="transfer damaged: sha256"):
        conn.put_resumable(transfer(where, offset=1000))
    assert not where["partial"].exists()
    assert where["path"].read_bytes() == b"the previous model\n"
    assert not where["record"].exists()


def test_a_part_shorter_than_planned_is_removed(conn, where):
    where["partial"].write_bytes(DATA[:300])
    with pytest.raises(CommandError, match="held 300 bytes, not the 400 expected"):
        conn.put_resumable(transfer(where, offset=400))
    assert not where["partial"].exists() and not where["path"].exists()


def test_a_part_longer_than_planned_skips_what_it_holds(conn, where):
    where["partial"].write_bytes(DATA[:500])  # an earlier attempt went on after the facts were read
    conn.put_resumable(transfer(where, offset=400))
    assert where["path"].read_bytes() == DATA and not where["partial"].exists()


def test_files_of_earlier_attempts_become_the_part_when_longer(conn, where):
    where["partial"].write_bytes(DATA[:1000])
    longer = where["partial"].with_name(where["partial"].name + ".Ab12Cd")  # its writer killed with SIGKILL
    longer.write_bytes(DATA[:5000])
    shorter = where["partial"].with_name(where["partial"].name + ".Zz98Yx")
    shorter.write_bytes(DATA[:200])
    sent = {"bytes": 0}
    conn.put_resumable(transfer(where, offset=5000), lambda n: sent.__setitem__("bytes", sent["bytes"] + n))
    assert where["path"].read_bytes() == DATA
    assert sent["bytes"] == len(DATA) - 5000, "only what no attempt had written crossed the link"
    assert sorted(p.name for p in where["partial"].parent.iterdir()) == []


def test_a_wrong_sha256_never_lands(conn, where):
    with pytest.raises(CommandError, match="transfer damaged"):
        conn.put_resumable(transfer(where, sha256=hashlib.sha256(b"other").hexdigest()))
    assert not where["path"].exists() and not where["partial"].exists()


def _counting(monkeypatch) -> dict[str, int]:
    sent = {"bytes": 0}
    real = channel.Exchange._send

    def send(self, data: bytes) -> bool:
        sent["bytes"] += len(data)
        return real(self, data)

    monkeypatch.setattr(channel.Exchange, "_send", send)
    return sent
