"""RPC cache seeding on a real host: the byte ranges land as entries named by their hashes, exactly, written by the
cache's owner; a hostile owner racing the writer never gets root to write, chown or chmod anything outside it."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import cache_swapper
import pytest

from llamafleet.errors import CommandError
from llamafleet.roles.model import seed

DATA = os.urandom(1 << 20)
SERVICE_USER = "lfseedsvc"  # this file's own system user, removed afterwards


@pytest.fixture(scope="module")
def service_user():
    """A system account standing for llamafleet_user (its own group, no login)."""
    subprocess.run(["userdel", SERVICE_USER], check=False, stderr=subprocess.DEVNULL)  # left by a killed run
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
    )
    try:
        yield pwd.getpwnam(SERVICE_USER)
    finally:
        subprocess.run(["userdel", SERVICE_USER], check=False)


@pytest.fixture
def var_cache():
    """A root-owned folder anyone may traverse, standing for /var/cache/llamafleet (tmp_path is root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="lf-seed-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def owned_cache(var_cache: Path, user) -> Path:
    """The service's cache as systemd's CacheDirectory= makes it: the user's own, mode 0700."""
    cache = var_cache / "rpc"
    cache.mkdir(mode=0o700)
    os.chown(cache, user.pw_uid, user.pw_gid)
    return cache


def test_entries_arrive_with_exact_bytes_owned_by_the_service_user(conn, tmp_path, var_cache, service_user):
    source = tmp_path / "model.gguf"
    source.write_bytes(DATA)
    cache = var_cache / "rpc"  # missing: made for the service user
    batch = [seed.Entry("00000000000000aa", source, 1000, 300_000), seed.Entry("00000000000000bb", source, 7, 10)]
    step = seed.feed(str(cache), SERVICE_USER, batch)
    conn.feed(step.command, step.source, step.ranges)
    assert sorted(p.name for p in cache.iterdir()) == ["00000000000000aa", "00000000000000bb"]
    assert (cache / "00000000000000aa").read_bytes() == DATA[1000:301_000]
    assert (cache / "00000000000000bb").read_bytes() == DATA[7:17]
    for path, mode in ((cache, 0o700), (cache / "00000000000000aa", 0o600), (cache / "00000000000000bb", 0o600)):
        stat = path.stat()
        assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o7777) == (service_user.pw_uid, service_user.pw_gid, mode)


def test_a_source_shorter_than_its_entries_leaves_no_entry(conn, tmp_path, var_cache, service_user):
    source = tmp_path / "model.gguf"
    source.write_bytes(DATA[:5000])
    cache = owned_cache(var_cache, service_user)
    step = seed.feed(str(cache), SERVICE_USER, [seed.Entry("00000000000000cc", Path(source), 1000, 300_000)])
    with pytest.raises(CommandError, match="cut short"):
        conn.feed(step.command, step.source, step.ranges)
    assert list(cache.iterdir()) == []


ENTRY_SIZE = 256 << 10


def canaries(folder: Path) -> list[Path]:
    """Root's files the swapper points its symlinks at: 0644, 0600 and 0640 ones of an entry's size (so that a writer
    following a symlink passes its own size check and goes on to chown and chmod), in a folder of their own."""
    folder.mkdir(mode=0o755)
    made = []
    for name, mode in (("passwd", 0o644), ("shadow", 0o600), ("host-key", 0o640)):
        path = folder / name
        path.write_bytes(f"root's {name}, not to be touched\n".encode().ljust(ENTRY_SIZE, b"."))
        path.chmod(mode)
        made.append(path)
    return made


ROUNDS = 8  # each round is one seeding the swapper stops; a writer that follows links loses a canary in most


def test_the_caches_owner_racing_the_writer_changes_nothing_of_roots(conn, tmp_path, var_cache, service_user):
    source = tmp_path / "model.gguf"
    source.write_bytes(DATA)
    cache = owned_cache(var_cache, service_user)
    targets = canaries(var_cache / "canaries")
    before = [cache_swapper.canary(path) for path in targets]
    batch = [seed.Entry(f"{i:016x}", source, i * 1000, ENTRY_SIZE) for i in range(1, 33)]
    planted = f"{batch[0].name}={targets[0]}"
    swapper = subprocess.Popen(
        ["perl", "-e", cache_swapper.SWAPPER, str(cache), "120", planted, *map(str, targets)],
        stdout=subprocess.PIPE,
        text=True,
        user=service_user.pw_uid,
        group=service_user.pw_gid,
        extra_groups=[],
    )
    failures = []
    try:
        assert swapper.stdout.readline() == "planted\n"
        step = seed.feed(str(cache), SERVICE_USER, batch)
        for _ in range(ROUNDS):
            try:
                conn.feed(step.command, step.source, step.ranges)
                failures.append(None)
            except CommandError as exc:
                failures.append(exc.output)
    finally:
        swapper.terminate()
        printed = swapper.communicate(timeout=30)[0]
    assert [cache_swapper.canary(path) for path in targets] == before
    assert cache_swapper.swaps(printed) >= ROUNDS, "the swapper raced the writer in every round"
    # The writer noticed each swap (before or after its rename) and stopped, saying why.
    assert all(failure is not None and "rpc cache: entry" in failure for failure in failures), failures
    leftovers = [p.name for p in cache.iterdir() if p.name.startswith(".") and not p.is_symlink()]
    assert leftovers == [], "the writer removes its temporary file when it stops"
