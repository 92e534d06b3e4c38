"""Reading known_hosts files: host patterns, hashed names, @revoked and @cert-authority, bad lines."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import paramiko
import pytest

from llamafleet.known_hosts import read_known_hosts

# Two real ed25519 public keys (ssh-keygen -t ed25519), and a key type paramiko does not know.
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFgfNmNaNVNzAzxEYEQ9yvMK1732uQ1bhKeMSmROiLBI"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJvw/I65hwVbYPQEtEw3k3dW0vhqMthHfSdlqUp0PY/1"
SK_KEY = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA=="


def blob(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    mac = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()}"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("patterns", "name", "pinned"),
    [
        ("node1", "node1", True),
        ("node1", "NODE1", True),
        ("node1", "node2", False),
        ("node1,10.0.0.1", "10.0.0.1", True),
        ("[10.0.0.1]:2222", "[10.0.0.1]:2222", True),
        ("[10.0.0.1]:2222", "10.0.0.1", False),
        ("10.0.0.1", "[10.0.0.1]:2222", False),
        ("*.lab", "w1.lab", True),
        ("*.lab,!w2.lab", "w2.lab", False),
        ("w?.lab", "w10.lab", False),
        ("[10.0.0.*]:2222", "[10.0.0.7]:2222", True),
        (hashed("node1"), "node1", True),
        (hashed("node1"), "node2", False),
        (hashed("[10.0.0.1]:2222"), "[10.0.0.1]:2222", True),
    ],
)
def test_host_patterns_match_as_in_openssh(tmp_path, patterns, name, pinned):
    found = read_known_hosts(write(tmp_path, f"{patterns} {KEY_A}"), name)
    assert [key.asbytes() for key in found.pinned()] == ([blob(KEY_A)] if pinned else [])


def test_hashed_names_match_paramikos_own_hashing(tmp_path):
    entry = paramiko.HostKeys.hash_host("w1.lab")
    assert read_known_hosts(write(tmp_path, f"{entry} {KEY_A}"), "w1.lab").pinned()


def test_comments_blank_lines_and_text_after_the_key_are_ignored(tmp_path):
    path = write(tmp_path, "# a comment", "", f"  node1 {KEY_A} root@node1 (added by hand)  ")
    assert [key.asbytes() for key in read_known_hosts(path, "node1").pinned()] == [blob(KEY_A)]


def test_a_revoked_key_is_refused_for_every_host(tmp_path):
    path = write(tmp_path, f"node1 {KEY_A}", f"node1 {KEY_B}", f"@revoked other.host {KEY_A}")
    found = read_known_hosts(path, "node1")
    assert [key.asbytes() for key in found.pinned()] == [blob(KEY_B)]
    key_a = paramiko.PKey.from_type_string("ssh-ed25519", blob(KEY_A))
    key_b = paramiko.PKey.from_type_string("ssh-ed25519", blob(KEY_B))
    assert (found.revoked_line(key_a), found.revoked_line(key_b)) == (3, None)


def test_a_cert_authority_line_is_recorded_not_pinned(tmp_path):
    path = write(tmp_path, f"@cert-authority *.lab {KEY_A}", f"@cert-authority *.other {KEY_B}")
    found = read_known_hosts(path, "w1.lab")
    assert (found.pinned(), found.authorities, found.revoked) == ([], [1], {})


def test_a_key_type_paramiko_cannot_use_is_skipped(tmp_path):
    found = read_known_hosts(write(tmp_path, f"node1 {SK_KEY}", f"node1 {KEY_A}"), "node1")
    assert [key.asbytes() for key in found.pinned()] == [blob(KEY_A)]


def test_a_missing_file_knows_nothing(tmp_path):
    found = read_known_hosts(tmp_path / "absent", "node1")
    assert (found.pinned(), found.revoked, found.authorities) == ([], {}, [])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"@trusted node1 {KEY_A}", "unknown marker @trusted"),
        ("node1 ssh-ed25519", "expected host patterns, a key type and a base64 key"),
        ("@revoked ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "expected host patterns"),
        ("node1 ssh-ed25519 not*base64", "the ssh-ed25519 key is not valid base64"),
        ("node1 ssh-ed25519 AAAA", "cannot read the ssh-ed25519 key"),
        (f"|1|c2FsdA==|xyz {KEY_A}", "malformed hashed host name"),
    ],
)
def test_an_unreadable_line_names_file_and_line(tmp_path, line, problem):
    path = write(tmp_path, f"node1 {KEY_B}", line)
    with pytest.raises(ValueError) as failure:
        read_known_hosts(path, "node1")
    assert str(failure.value).startswith(f"{path}:2: {problem}")
