"""known_hosts lines paramiko cannot read itself: @revoked is honoured, @cert-authority never trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
import sshd_server

from llamafleet.errors import ConnectError


@pytest.fixture
def connection(sshd, tmp_path, connect):
    """connection(known_hosts text, **HostConnection arguments) -> (the connection, the known_hosts file)."""

    def with_known_hosts(text: str, **kwargs):
        known = tmp_path / "known_hosts"
        known.write_text(text)
        return connect(sshd.write_inventory(tmp_path / "hosts.yml", known_hosts_file=str(known)), **kwargs), known

    return with_known_hosts


def other_key(tmp_path: Path) -> str:
    path = tmp_path / "ca"
    sshd_server.keygen(path)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@pytest.mark.parametrize("accept_new", [False, True])
def test_a_revoked_host_key_is_refused(sshd, connection, accept_new):
    target = f"[127.0.0.1]:{sshd.port}"
    text = sshd.host_key_line(target) + sshd.host_key_line("@revoked *")
    conn, known = connection(text, accept_new_host_keys=accept_new)
    with pytest.raises(ConnectError, match=rf"is REVOKED \({known}:2\)"):
        conn.run("true")


def test_a_revoked_key_is_not_recorded_on_first_use(sshd, connection):
    conn, known = connection(sshd.host_key_line("@revoked *"), accept_new_host_keys=True)
    with pytest.raises(ConnectError, match="REVOKED"):
        conn.run("true")
    assert known.read_text() == sshd.host_key_line("@revoked *")


def test_a_cert_authority_line_is_read_but_not_trusted(sshd, tmp_path, connection):
    authority = f"@cert-authority * {other_key(tmp_path)}\n"
    conn, known = connection(authority)
    with pytest.raises(ConnectError, match="unknown SSH host key .*lines 1 are @cert-authority"):
        conn.run("true")
    conn, known = connection(authority + sshd.host_key_line(f"[127.0.0.1]:{sshd.port}"))
    assert conn.run("true").ok, "the host's own key next to an authority line"


def test_an_unreadable_line_is_refused_with_file_and_line(sshd, connection):
    text = sshd.host_key_line(f"[127.0.0.1]:{sshd.port}") + "@trusted * ssh-ed25519 AAAA\n"
    conn, known = connection(text)
    with pytest.raises(ConnectError, match=rf"local: {known}:2: unknown marker @trusted"):
        conn.run("true")
