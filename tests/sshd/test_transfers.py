"""Uploads that arrive short or damaged are never renamed into place; downloads stream to disk."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from llamafleet import ssh
from llamafleet.errors import CommandError, ConnectError

OLD = b"the old content\n"
NEW = os.urandom(2 * 1024 * 1024)


@pytest.fixture
def target(tmp_path) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "app.conf"
    path.write_bytes(OLD)
    return path


def assert_left_alone(target: Path, wait: float = 0) -> None:
    """The old file is unchanged and, within `wait` seconds, no temporary upload file is left beside it."""
    deadline = time.monotonic() + wait
    while [p.name for p in target.parent.iterdir()] != [target.name] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.read_bytes() == OLD
    assert [p.name for p in target.parent.iterdir()] == [target.name], "temporary file removed"


class CutSource:
    """A file-like that gives `limit` bytes of `data`, then calls `cut` (which raises, or ends the stream)."""

    def __init__(self, data: bytes, limit: int, cut) -> None:
        self.stream, self.limit, self.cut = io.BytesIO(data), limit, cut

    def read(self, count: int) -> bytes:
        if self.stream.tell() >= self.limit:
            return self.cut()
        return self.stream.read(min(count, self.limit - self.stream.tell()))


def cut_after_a_mib(monkeypatch, cut) -> None:
    """Every upload's source gives its first MiB of data, then calls `cut`."""

    @contextlib.contextmanager
    def source(data):
        yield CutSource(data, 1024 * 1024, cut)

    monkeypatch.setattr(ssh, "_source", source)


def test_a_stream_shorter_than_announced_is_not_renamed(conn, target, monkeypatch):
    real = ssh._measure
    monkeypatch.setattr(ssh, "_measure", lambda data: (real(data)[0] + 1000, real(data)[1]))
    with pytest.raises(CommandError, match=r"upload cut short: 2097152 of 2098152 bytes arrived"):
        conn.put(NEW, str(target))
    assert_left_alone(target)


def test_a_damaged_stream_is_not_renamed(conn, target, monkeypatch):
    monkeypatch.setattr(ssh, "_measure", lambda data: (len(data), hashlib.sha256(b"other").hexdigest()))
    with pytest.raises(CommandError, match="upload damaged: sha256 " + hashlib.sha256(NEW).hexdigest()):
        conn.put(NEW, str(target))
    assert_left_alone(target)


def test_a_source_that_fails_midway_is_not_renamed(conn, target, monkeypatch):
    def fail():
        raise OSError("input/output error on the controller")

    cut_after_a_mib(monkeypatch, fail)
    with pytest.raises(CommandError, match="reading the data to send failed: input/output error"):
        conn.put(NEW, str(target))
    assert_left_alone(target)


def test_a_connection_closed_mid_upload_is_not_renamed(conn, target, monkeypatch):
    transport = conn.open().transport

    def close_connection():
        transport.close()
        return b""

    cut_after_a_mib(monkeypatch, close_connection)
    with pytest.raises(ConnectError, match="connection lost during: set -e"):
        conn.put(NEW, str(target))
    assert_left_alone(target, wait=10)
    monkeypatch.undo()
    conn.put(NEW, str(target))
    assert target.read_bytes() == NEW, "the next upload connects again"


def test_a_download_streams_to_disk_without_holding_the_file_in_memory(conn, tmp_path):
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for _ in range(96):
            handle.write(os.urandom(1024 * 1024))
    local = tmp_path / "copy.bin"
    tracemalloc.start()
    try:
        digest = conn.get(str(big), local)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * 1024 * 1024, f"peak {peak} bytes in memory for a 96 MiB file"
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()
    assert local.stat().st_size == big.stat().st_size


def test_a_controller_file_changed_since_it_was_recorded_is_refused_on_the_host(conn, target, tmp_path):
    """A cached artifact is pushed with the sha256 recorded when it was cached: a swapped file never lands."""
    cached = tmp_path / "artifact.tar.gz"
    cached.write_bytes(NEW)
    recorded = hashlib.sha256(NEW).hexdigest()
    cached.write_bytes(NEW[:-1] + bytes([NEW[-1] ^ 1]))  # altered in the cache after it was recorded
    with pytest.raises(CommandError, match="upload damaged"):
        conn.put(cached, str(target), sha256=recorded)
    assert_left_alone(target)
    cached.write_bytes(NEW)
    conn.put(cached, str(target), sha256=recorded)
    assert target.read_bytes() == NEW
