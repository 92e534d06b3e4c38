"""RPC cache seeding on a real host: the byte ranges land as entries named by their hashes, exactly."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from llamafleet.errors import CommandError
from llamafleet.roles.model import seed

DATA = os.urandom(1 << 20)


def test_entries_arrive_with_exact_bytes_and_no_temporary_file_is_left(conn, tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(DATA)
    cache = tmp_path / "cache" / "rpc"
    user = pwd.getpwuid(os.getuid()).pw_name
    batch = [seed.Entry("00000000000000aa", source, 1000, 300_000), seed.Entry("00000000000000bb", source, 7, 10)]
    step = seed.feed(str(cache), user, batch)
    conn.feed(step.command, step.source, step.ranges)
    assert sorted(p.name for p in cache.iterdir()) == ["00000000000000aa", "00000000000000bb"]
    assert (cache / "00000000000000aa").read_bytes() == DATA[1000:301_000]
    assert (cache / "00000000000000bb").read_bytes() == DATA[7:17]
    assert (
        oct(cache.stat().st_mode & 0o777) == "0o700"
        and oct((cache / "00000000000000bb").stat().st_mode & 0o777) == "0o600"
    )


def test_a_source_shorter_than_its_entries_leaves_no_entry(conn, tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(DATA[:5000])
    cache = tmp_path / "cache"
    user = pwd.getpwuid(os.getuid()).pw_name
    step = seed.feed(str(cache), user, [seed.Entry("00000000000000cc", Path(source), 1000, 300_000)])
    with pytest.raises(CommandError):
        conn.feed(step.command, step.source, step.ranges)
    assert list(cache.iterdir()) == []
