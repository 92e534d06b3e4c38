"""ProxyJump from the inventory, with the jump host's key pinned; ~/.ssh/config changes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from llamafleet import inventory
from llamafleet.errors import ConnectError
from llamafleet.ssh import HostConnection

JUMP_ARGS = {
    "option": "-o ProxyJump={jump}",
    "short flag": "-J root@{jump}",
    "with other options": "-o ControlMaster=auto -o ProxyJump=ssh://{jump} -C",
}


def jump_connection(sshd, tmp_path: Path, known: Path, args: str = JUMP_ARGS["option"], **kwargs) -> HostConnection:
    """The target 127.0.0.1 reached through the jump host 127.0.0.2 (the same sshd on another address)."""
    common = args.format(jump=f"127.0.0.2:{sshd.port}")
    path = sshd.write_inventory(tmp_path / "hosts.yml", known_hosts_file=str(known), ansible_ssh_common_args=common)
    return HostConnection(inventory.load(path).head, **kwargs)


def known_hosts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("args", JUMP_ARGS.values(), ids=JUMP_ARGS.keys())
def test_a_pinned_jump_host_is_used(sshd, tmp_path, args):
    conn = jump_connection(sshd, tmp_path, sshd.known_hosts, args)
    result = conn.check("echo $SSH_CONNECTION")
    assert result.stdout.split()[2] == "127.0.0.1", "the command ran on the target"
    assert isinstance(conn.open().transport.sock, paramiko.Channel), "reached through a channel of the jump host"
    conn.close()


def test_an_unknown_jump_host_key_is_refused(sshd, tmp_path):
    known = known_hosts(tmp_path, sshd.host_key_line(f"[127.0.0.1]:{sshd.port}"))
    jump = f"[127.0.0.2]:{sshd.port}"
    with pytest.raises(ConnectError, match=rf"jump host \[127\.0\.0\.2\]:{sshd.port}: unknown SSH host key"):
        jump_connection(sshd, tmp_path, known).run("true")
    assert jump not in known.read_text()
    assert jump_connection(sshd, tmp_path, known, accept_new_host_keys=True).run("true").ok
    assert f"{jump} ssh-ed25519" in known.read_text(), "trust on first use records the jump host too"
    assert jump_connection(sshd, tmp_path, known).run("true").ok


def test_a_changed_jump_host_key_is_refused_in_every_mode(sshd, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    target = sshd.host_key_line(f"[127.0.0.1]:{sshd.port}")
    known = known_hosts(tmp_path, target, f"[127.0.0.2]:{sshd.port} {kind} {key}\n")
    for accept_new in (False, True):
        with pytest.raises(ConnectError, match=r"jump host \[127\.0\.0\.2\]:\d+: SSH host key CHANGED"):
            jump_connection(sshd, tmp_path, known, accept_new_host_keys=accept_new).run("true")


def test_the_target_behind_a_jump_host_is_pinned_too(sshd, tmp_path):
    known = known_hosts(tmp_path, sshd.host_key_line(f"[127.0.0.2]:{sshd.port}"))
    with pytest.raises(ConnectError, match=rf"unknown SSH host key of \[127\.0\.0\.1\]:{sshd.port}") as failure:
        jump_connection(sshd, tmp_path, known).run("true")
    assert "jump host" not in str(failure.value)


def test_ssh_config_files_are_not_read(sshd, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text(
        "Host *\n  HostName 127.0.0.9\n  Port 1\n  User nobody\n  ProxyJump nobody@127.0.0.9:1\n"
        "  IdentityFile /nonexistent\n  ProxyCommand false\n"
    )
    (home / ".fabric.yml").write_text("user: nobody\nport: 1\n")
    monkeypatch.setenv("HOME", str(home))
    conn = HostConnection(inventory.load(sshd.write_inventory(tmp_path / "hosts.yml")).head)
    user, _client, _port, server, port = conn.check("whoami; echo $SSH_CONNECTION").stdout.split()
    assert (user, server, port) == ("root", "127.0.0.1", str(sshd.port)), "host, port and user of the inventory"
