"""Large streams through the ssh program: pinned to the keys the engine verified, same privileges, same checks."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import time

import paramiko
import pytest
from model_transfer import DATA, SHA, attempt_size, settled_part, transfer

from llamafleet import hostscripts, inventory, openssh
from llamafleet.channel import Limited
from llamafleet.errors import CommandError, ConnectError
from llamafleet.ssh import HostConnection


def ssh_children() -> set[int]:
    """Pids of the ssh programs this test process started."""
    found = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    return {int(pid) for pid, comm in (line.split() for line in found.stdout.splitlines()) if comm == "ssh"}


def test_a_transfer_goes_through_the_ssh_program(conn, where):
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(ssh_children())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        conn.put_resumable(transfer(where))
    finally:
        done.set()
        watcher.join()
    assert where["path"].read_bytes() == DATA
    assert conn.bulk_fallback is None, conn.bulk_fallback
    assert seen, "an ssh process carried the stream"
    assert not ssh_children(), "the ssh process is gone once the stream ended"


def test_the_generated_client_reads_no_user_config_and_pins_the_verified_key(conn, sshd):
    conn.run("true")
    client = conn._bulk_client()
    config = client.config.read_text()
    assert "StrictHostKeyChecking yes" in config and "BatchMode yes" in config
    assert "GlobalKnownHostsFile /dev/null" in config
    kind, key = sshd.host_key_pub.read_text().split()[:2]
    assert client.folder.stat().st_mode & 0o777 == 0o700
    assert (client.folder / "known_hosts").read_text() == f"[127.0.0.1]:{sshd.port} {kind} {key}\n"
    argv = client.argv("echo hi")
    assert argv[:3] == ["ssh", "-F", str(client.config)] and argv[-2:] == ["127.0.0.1", "echo hi"]
    assert argv[-3] == "--", "the host is never read as an option"
    conn.close()
    assert not client.folder.exists(), "closing the connection removes the generated files"


def test_a_host_presenting_another_key_than_verified_is_refused_by_ssh(conn, sshd, tmp_path):
    conn.run("true")
    other = paramiko.Ed25519Key.from_private_key_file(str(sshd.key))  # any ed25519 key but the host's
    target = openssh.Pinned(conn._target, other)
    client = openssh.Client(target, [], sshd.key, 10)
    try:
        done = subprocess.run(client.argv("echo reached"), capture_output=True, text=True, timeout=30)
    finally:
        client.close()
    assert done.returncode == openssh.FAILED and "reached" not in done.stdout
    assert re.search(
        r"host key verification failed|host key .* not known|REMOTE HOST IDENTIFICATION", done.stderr, re.I
    )


def test_when_ssh_cannot_log_in_paramiko_carries_the_stream(conn, where, monkeypatch):
    conn.run("true")
    real = openssh.Client.argv
    # ssh offered no usable key: it fails before the command starts, so nothing of the stream was read.
    monkeypatch.setattr(openssh.Client, "argv", lambda self, line: [*real(self, line)[:1], "-i", "/dev/null", "-o",
                        "IdentityFile=/dev/null", "-o", "PubkeyAuthentication=no", *real(self, line)[1:]])  # fmt: skip
    conn.put_resumable(transfer(where))
    assert where["path"].read_bytes() == DATA
    assert conn.bulk_fallback and "ssh could not run the command" in conn.bulk_fallback


def test_the_paramiko_path_can_be_chosen(sshd, tmp_path, connect, where, monkeypatch):
    monkeypatch.setenv(openssh.BULK_ENV, "paramiko")
    conn = connect(sshd.write_inventory(tmp_path / "hosts.yml"))
    conn.put_resumable(transfer(where))
    assert where["path"].read_bytes() == DATA
    assert conn.bulk_fallback == f"{openssh.BULK_ENV}=paramiko"


def test_a_password_login_sends_its_streams_through_paramiko(sshd, tmp_path, connect):
    conn = connect(sshd.write_inventory(tmp_path / "hosts.yml", ansible_password="not-used-here"))
    assert conn.bulk_fallback == "password authentication (ssh runs in batch mode)"


def test_through_a_jump_host_ssh_pins_both_keys(sshd, tmp_path, connect, where):
    conn = connect(sshd.write_jump_inventory(tmp_path / "hosts.yml", sshd.known_hosts))
    conn.put_resumable(transfer(where))
    assert where["path"].read_bytes() == DATA
    assert conn.bulk_fallback is None, conn.bulk_fallback
    known = (conn._bulk_client().folder / "known_hosts").read_text()
    assert known.count(" ssh-ed25519 ") == 2 and f"[127.0.0.2]:{sshd.port} " in known
    argv = conn._bulk_client().argv("true")
    assert argv[argv.index("-J") + 1] == f"127.0.0.2:{sshd.port}"


def test_as_a_sudo_user_the_stream_lands_as_root_without_the_password(become_inventory, tmp_path, connect):
    conn = connect(become_inventory)
    payload = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    target = tmp_path / "landed.bin"
    conn.put(source, str(target), mode="0640")
    assert conn.bulk_fallback is None, conn.bulk_fallback
    assert target.read_bytes() == payload and target.stat().st_uid == 0
    password = inventory.load(become_inventory).head.vars["ansible_become_password"].encode()
    assert password not in target.read_bytes()


def test_a_session_killed_mid_stream_is_a_lost_connection_and_the_part_resumes(sshd, conn, where):
    where["path"].write_bytes(b"the previous model\n")
    killed: list[int] = []

    def cut_once_a_mib_arrived() -> None:
        """Kills the sshd session serving the ssh program once 1 MiB landed (a cut link)."""
        deadline = time.monotonic() + 20
        while not killed and time.monotonic() < deadline:
            if attempt_size(where["partial"]) >= 1024 * 1024:
                for pid in ssh_children():
                    port = _client_port(pid, sshd.port)
                    killed.extend(sshd.kill_session(port) if port else [])
            time.sleep(0.005)

    class Slow(Limited):
        """The source, 64 KiB at a time and slowly, so that the cut comes mid-stream."""

        def spans(self):
            for handle, offset, size in super().spans():
                for at in range(offset, offset + size, 64 * 1024):
                    time.sleep(0.01)
                    yield handle, at, min(64 * 1024, offset + size - at)

    cutter = threading.Thread(target=cut_once_a_mib_arrived)
    cutter.start()
    step = transfer(where)
    try:
        with open(step.source, "rb") as handle, pytest.raises(ConnectError, match="connection lost"):
            conn.stream(_resumable_script(step), Slow(handle, len(DATA)))
    finally:
        cutter.join()
    assert killed, "the session was found and killed"
    assert where["path"].read_bytes() == b"the previous model\n", "the target is never touched by a partial"
    arrived = settled_part(where["partial"])
    assert 0 < arrived < len(DATA) and where["partial"].read_bytes() == DATA[:arrived]
    conn.put_resumable(transfer(where, offset=arrived))
    assert hashlib.sha256(where["path"].read_bytes()).hexdigest() == SHA


def test_an_earlier_attempt_that_outlives_its_connection_never_touches_the_verified_file(conn, where):
    """The writer of a cut transfer may still run on the host (the link is back, the host never noticed the cut)
    and may yet receive bytes its controller had buffered: the next attempt stops it, takes what it wrote as
    the part and sends only the rest; nothing of the earlier attempt reaches the verified file."""
    release = threading.Event()

    class Stalled:
        """1 MiB of the model, then a wait for the new attempt, then bytes that are not the model's."""

        def __init__(self) -> None:
            self.reads = 0

        def read(self, count: int) -> bytes:
            self.reads += 1
            if self.reads == 1:
                return DATA[: 1024 * 1024]
            release.wait(60)
            return b"X" * 4096 if self.reads == 2 else b""

    step = transfer(where)
    stale = HostConnection(conn.host)
    failures: list[BaseException] = []

    def earlier() -> None:
        try:
            stale.stream(_resumable_script(step), Stalled())
        except CommandError as exc:
            failures.append(exc)

    writer = threading.Thread(target=earlier)
    writer.start()
    try:
        deadline = time.monotonic() + 20
        while attempt_size(where["partial"]) < 1024 * 1024 and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.put_resumable(step)  # planned from byte 0: the host skips what the earlier attempt wrote
        landed = where["path"].read_bytes()
    finally:
        release.set()
        writer.join(60)
        stale.close()
    assert landed == DATA
    assert where["path"].read_bytes() == DATA, "nothing of the earlier attempt reached the verified file"
    assert failures and "cut short" in str(failures[0]), "the earlier attempt's writer was stopped"
    assert sorted(p.name for p in where["partial"].parent.iterdir()) == [], "its bytes were taken, nothing is left"


def test_a_failing_command_reports_its_status_and_output(conn):
    with open(os.devnull, "rb") as empty, pytest.raises(CommandError, match="exited 3") as failed:
        conn.stream("cat >/dev/null; echo broken >&2; exit 3", Limited(empty, 0))
    assert "broken" in failed.value.output


def _client_port(pid: int, server_port: int) -> int | None:
    listing = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if f"pid={pid}," in line and line.split()[-2].endswith(f":{server_port}"):
            return int(line.split()[-3].rsplit(":", 1)[1])
    return None


def _resumable_script(t) -> str:
    return hostscripts.resumable(t)
