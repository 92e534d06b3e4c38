"""known_hosts lines paramiko cannot read itself: @revoked is honoured, @cert-authority never trusted, a host pinned
in a way paramiko cannot check never taken as new."""

from __future__ import annotations

from pathlib import Path

import pytest
import sshd_server

from llamafleet.errors import ConnectError, InventoryError


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


def test_a_line_that_is_not_known_hosts_is_refused_as_the_inventory_loads(sshd, connection):
    text = sshd.host_key_line(f"[127.0.0.1]:{sshd.port}") + "@trusted * ssh-ed25519 AAAA\n"
    with pytest.raises(
        InventoryError, match=r"host local: known_hosts_file: .*/known_hosts:2: unknown marker @trusted"
    ):
        connection(text)


def test_a_key_paramiko_cannot_read_is_refused_with_file_and_line(sshd, connection):
    # Well formed (its data names its type), but 1 byte where ed25519 has 32: only paramiko finds out.
    text = sshd.host_key_line(f"[127.0.0.1]:{sshd.port}") + "other ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAAQA=\n"
    conn, known = connection(text)
    with pytest.raises(ConnectError, match=rf"local: {known}:2: cannot read the ssh-ed25519 key"):
        conn.run("true")


# A key type paramiko neither offers nor reads (a FIDO key): what OpenSSH would check, llamafleet cannot.
SK_KEY = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA=="


@pytest.mark.parametrize("accept_new", [False, True])
def test_a_host_pinned_with_a_key_type_paramiko_lacks_is_refused_not_taken_as_new(sshd, connection, accept_new):
    target = f"[127.0.0.1]:{sshd.port}"
    text = f"{target} {SK_KEY}\n"
    conn, known = connection(text, accept_new_host_keys=accept_new)
    with pytest.raises(ConnectError) as caught:
        conn.run("true")
    assert f"{known}:1 pins a sk-ssh-ed25519@openssh.com key for {target}" in str(caught.value)
    assert "the host is not new" in str(caught.value)
    assert known.read_text() == text, "nothing recorded"


def test_with_accept_new_a_host_under_a_cert_authority_is_refused_not_taken_as_new(sshd, tmp_path, connection):
    text = f"@cert-authority * {other_key(tmp_path)}\n"
    conn, known = connection(text, accept_new_host_keys=True)
    with pytest.raises(
        ConnectError, match=r"lines 1 are @cert-authority for \[127\.0\.0\.1\]:\d+ .*the host is not new"
    ):
        conn.run("true")
    assert known.read_text() == text, "nothing recorded"


def test_with_accept_new_a_new_host_is_recorded_and_then_pinned(sshd, connection):
    conn, known = connection("# pinned by hand below\n", accept_new_host_keys=True)
    assert conn.run("true").ok
    assert known.read_text() == "# pinned by hand below\n" + sshd.host_key_line(f"[127.0.0.1]:{sshd.port}")
