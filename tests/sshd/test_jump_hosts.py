"""ProxyJump from the inventory, with the jump host's key pinned; ~/.ssh/config changes nothing."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
import sshd_server

from llamafleet.errors import ConnectError

JUMP_ARGS = {
    "option": "-o ProxyJump={jump}",
    "short flag": "-J root@{jump}",
    "with other options": "-o ControlMaster=auto -o ProxyJump=ssh://{jump} -C",
}


def known_hosts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("args", JUMP_ARGS.values(), ids=JUMP_ARGS.keys())
def test_a_pinned_jump_host_is_used(sshd, tmp_path, connect, args):
    conn = connect(sshd.write_jump_inventory(tmp_path / "hosts.yml", sshd.known_hosts, args))
    result = conn.check("echo $SSH_CONNECTION")
    assert result.stdout.split()[2] == "127.0.0.1", "the command ran on the target"
    assert isinstance(conn.open().transport.sock, paramiko.Channel), "reached through a channel of the jump host"


def test_an_unknown_jump_host_key_is_refused(sshd, tmp_path, connect):
    known = known_hosts(tmp_path, sshd.host_key_line(f"[127.0.0.1]:{sshd.port}"))
    inventory_file = sshd.write_jump_inventory(tmp_path / "hosts.yml", known)
    jump = f"[127.0.0.2]:{sshd.port}"
    with pytest.raises(ConnectError, match=rf"jump host \[127\.0\.0\.2\]:{sshd.port}: unknown SSH host key"):
        connect(inventory_file).run("true")
    assert jump not in known.read_text()
    assert connect(inventory_file, accept_new_host_keys=True).run("true").ok
    assert f"{jump} ssh-ed25519" in known.read_text(), "trust on first use records the jump host too"
    assert connect(inventory_file).run("true").ok


def test_a_changed_jump_host_key_is_refused_in_every_mode(sshd, tmp_path, connect):
    other = tmp_path / "other"
    sshd_server.keygen(other)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    target = sshd.host_key_line(f"[127.0.0.1]:{sshd.port}")
    known = known_hosts(tmp_path, target, f"[127.0.0.2]:{sshd.port} {kind} {key}\n")
    inventory_file = sshd.write_jump_inventory(tmp_path / "hosts.yml", known)
    for accept_new in (False, True):
        with pytest.raises(ConnectError, match=r"jump host \[127\.0\.0\.2\]:\d+: SSH host key CHANGED"):
            connect(inventory_file, accept_new_host_keys=accept_new).run("true")


def test_the_target_behind_a_jump_host_is_pinned_too(sshd, tmp_path, connect):
    known = known_hosts(tmp_path, sshd.host_key_line(f"[127.0.0.2]:{sshd.port}"))
    with pytest.raises(ConnectError, match=rf"unknown SSH host key of \[127\.0\.0\.1\]:{sshd.port}") as failure:
        connect(sshd.write_jump_inventory(tmp_path / "hosts.yml", known)).run("true")
    assert "jump host" not in str(failure.value)


def test_ssh_config_files_are_not_read(sshd, tmp_path, connect, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text(
        "Host *\n  HostName 127.0.0.9\n  Port 1\n  User nobody\n  ProxyJump nobody@127.0.0.9:1\n"
        "  IdentityFile /nonexistent\n  ProxyCommand false\n"
    )
    (home / ".fabric.yml").write_text("user: nobody\nport: 1\n")
    monkeypatch.setenv("HOME", str(home))
    conn = connect(sshd.write_inventory(tmp_path / "hosts.yml"))
    user, _client, _port, server, port = conn.check("whoami; echo $SSH_CONNECTION").stdout.split()
    assert (user, server, port) == ("root", "127.0.0.1", str(sshd.port)), "host, port and user of the inventory"
