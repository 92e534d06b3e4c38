"""known_hosts files: only a file that parses as one is read for a host or appended to; a host pinned in a way
paramiko cannot check is never taken as new; a new file is made only where llamafleet's files go."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import paramiko
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamafleet import connvars, controller_files, inventory
from llamafleet.controller_files import known_hosts_problem, new_known_hosts_problem, parse_host_key_line
from llamafleet.errors import ConnectError, InventoryError
from llamafleet.known_hosts import HostKeyPolicy, read_known_hosts

# Real public keys (ssh-keygen), one per type paramiko reads, and one of a type it lacks.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHrziTHSIWFnadmsjIggSexvC5aXti41lsWrVPG8supX"
ECDSA = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJsftk26jyHJrBLBa0+K6nOvehwILyqJnEovvbmL"
    "tFND/3CXqmMwgKP/NatbNZdGGOer1z/yBNNqnCBK2qCgEZ0="
)
RSA = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC3MCBRvDB3dKrOtgAZQ30qce9Y6NR9UOEChZjqFiRPOEJkyytTIwMeg7Mi/jLk9qsm3Ecx8SMS"
    "Qr6G/GyvjAGGwpyDIb7k7EWCS0Si8xVu9tt8AnGeUpcnkMT26D27orRuzQA4zKH6kGL7Ak2VHhvTYTlgt9Ccsg0mgJxfQq1Urw=="
)
SK = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA=="
KEYS = (ED25519, ECDSA, RSA, SK)
HASHED = "|1|MDEyMzQ1Njc4OWFiY2RlZmdoaWo=|Ay0gbDHLmrEMHvahXF+gyqIgaoE="

HOSTS = "all:\n  vars:\n    known_hosts_file: %s\n  children:\n    head:\n      hosts:\n        h1:\n"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def pkey(line: str) -> paramiko.PKey:
    kind, blob = line.split()
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


# --------------------------------------------------------------------------- what parses as known_hosts


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n\n",
        "".join(f"node{n},10.0.0.{n} {key} a comment\n" for n, key in enumerate(KEYS)),
        f"[10.0.0.1]:2222 {ED25519}\n{HASHED} {ECDSA}\n*.lab,!w2.lab {RSA}\n",
        f"@revoked * {ED25519}\n@cert-authority *.lab {ECDSA}\n",
        f"  \t node1 {ED25519}   \n# trailing\nnode2 {RSA}",  # no newline at the end
    ],
)
def test_a_known_hosts_file_parses(tmp_path, text):
    assert known_hosts_problem(write(tmp_path / "known_hosts", text)) is None


# What a hostile inventory might name as its known_hosts file: -> the line and the problem.
NOT_KNOWN_HOSTS = {
    "passwd": ("root:x:0:0:root:/root:/bin/bash\n", 1, "expected host patterns, a key type and a base64 key"),
    "shell": ("# ~/.bashrc\nexport PATH=/x:$PATH\n", 2, "expected host patterns, a key type and a base64 key"),
    "git credentials": ("https://me:ghp_secret@github.com\n", 1, "expected host patterns, a key type and a base64 key"),
    "private key": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
        1,
        "the second field is not an SSH key type",
    ),
    "authorized_keys": (
        f'from="10.0.0.1" {ED25519} me@laptop\n',
        1,
        "the first field is not a list of host names or patterns",
    ),
    "three words": ("alpha beta cd==\n", 1, "cannot read the beta key: its data is no SSH key"),
    "type mislabelled": (
        f"node1 ssh-rsa {ED25519.split()[1]}\n",
        1,
        "cannot read the ssh-rsa key: its data is a ssh-ed25519 key",
    ),
    "binary": (b"\x7fELF\x02\x01\x01\x00\xff\xfe\n", 1, "not UTF-8 text"),
    "long line": ("x" * (70 * 1024) + "\n", 1, "a line longer than 64 KiB"),
    "bad base64": ("node1 ssh-ed25519 not*base64\n", 1, "the ssh-ed25519 key is not valid base64"),
    "marker": (f"@trusted node1 {ED25519}\n", 1, "unknown marker @trusted (OpenSSH has @cert-authority and @revoked)"),
}


@pytest.mark.parametrize("case", NOT_KNOWN_HOSTS)
def test_a_file_that_is_not_known_hosts_is_named_with_its_line(tmp_path, case):
    text, line, problem = NOT_KNOWN_HOSTS[case]
    path = write(tmp_path / "file", text)
    assert known_hosts_problem(path) == f"{path}:{line}: {problem}: not a known_hosts file"


def test_a_secret_in_the_file_is_never_quoted(tmp_path):
    for case, (text, _, _) in NOT_KNOWN_HOSTS.items():
        path = write(tmp_path / "file", text)
        found = known_hosts_problem(path).removeprefix(str(path))
        assert "secret" not in found and "PRIVATE" not in found and "root:x" not in found, case


def test_a_folder_or_device_is_not_a_known_hosts_file(tmp_path):
    assert known_hosts_problem(tmp_path) == f"{tmp_path} is not a file"
    assert known_hosts_problem(Path("/dev/zero")) == "/dev/zero is not a file"


@pytest.mark.parametrize("key", KEYS)
def test_every_line_names_its_key_type_in_its_key(key):
    entry = parse_host_key_line(f"@revoked node1 {key} comment")
    assert (entry.marker, entry.patterns, entry.kind) == ("@revoked", "node1", key.split()[0])
    assert entry.blob == base64.b64decode(key.split()[1])


# --------------------------------------------------------------------------- refused when the inventory loads


@pytest.mark.parametrize("case", ["passwd", "private key", "binary"])
def test_an_inventory_naming_a_file_that_is_not_known_hosts_is_refused_as_it_loads(tmp_path, case):
    named = write(tmp_path / "secret", NOT_KNOWN_HOSTS[case][0])
    path = write(tmp_path / "hosts.yml", HOSTS % json.dumps(str(named)))
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: host h1: known_hosts_file: {named}:1: ")
    assert message.endswith(": not a known_hosts file") and "\n" not in message
    assert caught.value.exit_code == 2


def test_user_known_hosts_file_in_ssh_arguments_is_checked_too(tmp_path):
    named = write(tmp_path / "passwd", NOT_KNOWN_HOSTS["passwd"][0])
    path = write(tmp_path / "hosts.yml", "all:\n  children:\n    head:\n      hosts:\n        h1:\n")
    values = {**inventory.load(path).hosts["h1"].vars, "ansible_ssh_common_args": f"-o UserKnownHostsFile={named}"}
    with pytest.raises(InventoryError, match=f"known_hosts_file: {named}:1: expected host patterns"):
        connvars.read("h1", values, str(path))


def test_a_known_hosts_file_read_by_many_hosts_is_parsed_once(tmp_path):
    known = write(tmp_path / "known_hosts", "".join(f"w{n} {ED25519}\n" for n in range(50)))
    hosts = "".join(f"        w{n}: {{ansible_host: 127.0.0.{n + 2}}}\n" for n in range(50))
    text = (HOSTS % json.dumps(str(known))) + "    others:\n      hosts:\n" + hosts  # not workers: at most 16
    controller_files._known_hosts_problem.cache_clear()
    inventory.load(write(tmp_path / "hosts.yml", text))
    assert controller_files._known_hosts_problem.cache_info().misses == 1


# --------------------------------------------------------------------------- a new file, made only where ours go


def test_a_new_known_hosts_file_is_made_only_at_the_default_or_beside_the_inventory(tmp_path):
    folder, default = tmp_path / "inventory", tmp_path / "home/.ssh/known_hosts"
    assert new_known_hosts_problem(default, default, folder) is None
    assert new_known_hosts_problem(folder / "lab.known_hosts", default, folder) is None
    assert new_known_hosts_problem(folder / "sub/known_hosts", default, folder) is None
    for odd in (tmp_path / "etc/sudoers.d/known_hosts", folder / "../etc/ld.so.preload"):
        problem = new_known_hosts_problem(odd, default, folder)
        assert problem.startswith(f"{odd} does not exist, and --accept-new-host-keys makes a new known_hosts file")
    existing = write(tmp_path / "elsewhere", "")
    assert new_known_hosts_problem(existing, default, folder) is None, "an existing file is checked as it loads"


def test_a_symlink_from_the_inventory_folder_to_elsewhere_is_not_a_place_for_a_new_file(tmp_path):
    folder = tmp_path / "inventory"
    folder.mkdir()
    (folder / "known_hosts").symlink_to(tmp_path / "etc/profile.d/x.sh")
    assert new_known_hosts_problem(folder / "known_hosts", tmp_path / "default", folder) is not None


# --------------------------------------------------------------------------- the host-key policy


def policy(path: Path, name: str, accept_new: bool) -> HostKeyPolicy:
    return HostKeyPolicy(name, "", read_known_hosts(path, name), accept_new)


@pytest.mark.parametrize("accept_new", [False, True])
def test_a_host_pinned_with_a_key_type_paramiko_lacks_is_not_new(tmp_path, accept_new):
    text = f"other {ED25519}\n[127.0.0.1]:2222 {SK}\n"
    path = write(tmp_path / "known_hosts", text)
    with pytest.raises(ConnectError) as caught:
        policy(path, "[127.0.0.1]:2222", accept_new).missing_host_key(
            paramiko.SSHClient(), "[127.0.0.1]:2222", pkey(RSA)
        )
    message = str(caught.value)
    assert f"{path}:2 pins a sk-ssh-ed25519@openssh.com key for [127.0.0.1]:2222" in message
    assert "so the host is not new" in message and "\n" not in message
    assert path.read_text() == text, "nothing recorded"


def test_with_accept_new_a_host_vouched_for_by_an_authority_is_not_new(tmp_path):
    text = f"@cert-authority *.lab {ED25519}\n"
    path = write(tmp_path / "known_hosts", text)
    with pytest.raises(ConnectError, match=r"lines 1 are @cert-authority for w1\.lab .* the host is not new"):
        policy(path, "w1.lab", True).missing_host_key(paramiko.SSHClient(), "w1.lab", pkey(RSA))
    assert path.read_text() == text


def test_with_accept_new_a_new_host_is_recorded_on_a_line_of_its_own(tmp_path):
    path = write(tmp_path / "known_hosts", f"other {ED25519}")  # no newline at the end
    policy(path, "w1.lab", True).missing_host_key(paramiko.SSHClient(), "w1.lab", pkey(RSA))
    assert path.read_text() == f"other {ED25519}\nw1.lab {RSA}\n"
    assert read_known_hosts(path, "w1.lab").pinned() == [pkey(RSA)]


def test_with_accept_new_a_missing_file_is_made_in_a_private_folder(tmp_path):
    path = tmp_path / "new/known_hosts"
    policy(path, "w1.lab", True).missing_host_key(paramiko.SSHClient(), "w1.lab", pkey(ECDSA))
    assert path.read_text() == f"w1.lab {ECDSA}\n"
    assert os.stat(path.parent).st_mode & 0o777 == 0o700


# --------------------------------------------------------------------------- properties

KNOWN_LINE = st.builds(
    lambda marker, hosts, key, comment: f"{marker}{','.join(hosts)} {key}{comment}",
    st.sampled_from(["", "@revoked ", "@cert-authority "]),
    st.lists(st.from_regex(r"!?(\[[a-z0-9.*?-]{1,20}\]:[0-9]{1,5}|[a-z0-9.*?-]{1,20})", fullmatch=True), min_size=1),
    st.sampled_from(KEYS),
    st.sampled_from(["", " a comment", " root@host"]),
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(KNOWN_LINE, st.just("# note"), st.just("")), max_size=20))
def test_any_file_of_known_hosts_lines_parses(tmp_path, lines):
    path = write(tmp_path / "known_hosts", "\n".join(lines) + "\n")
    assert known_hosts_problem(path) is None
    read_known_hosts(path, "node1")  # and the connection reads it as well


# Lines shaped like known_hosts entries from parts that may not fit: markers, names, key types and keys drawn apart.
PART = st.sampled_from(["node1", "*.lab", "[10.0.0.1]:22", 'from="x"', "root:x:0:0", "cd==", "AAAA", "-", ""])
KIND = st.sampled_from([key.split()[0] for key in KEYS] + ["beta", "SSH-RSA"])
BLOB = st.sampled_from([key.split()[1] for key in KEYS] + ["cd==", "AAAA", "not*base64"])
SHAPED = st.tuples(st.sampled_from(["", "@revoked ", "@trusted ", "# "]), PART, KIND, BLOB, PART).map(
    lambda parts: "{}{} {} {} {}".format(*parts)
)
LINES = st.lists(SHAPED | st.text(max_size=30), max_size=6).map("\n".join)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=LINES | st.text())
def test_a_file_parses_only_if_each_line_holds_a_key_of_the_type_it_names(tmp_path, text):
    path = write(tmp_path / "file", text.encode("utf-8", "surrogatepass"))
    problem = known_hosts_problem(path)
    if problem is not None:
        assert problem.startswith(f"{path}") and problem.isprintable()
        return
    for line in text.split("\n"):  # lines as ssh and llamafleet read them: a "\r" does not end one
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            kind, blob = fields[1:3] if not fields[0].startswith("@") else fields[2:4]
            data = base64.b64decode(blob)
            assert data[4 : 4 + int.from_bytes(data[:4], "big")] == kind.encode(), line


def test_a_carriage_return_inside_a_comment_starts_no_line_of_its_own(tmp_path):
    """Checked as one comment line, so read as one: no key hides behind a "\r" in a comment."""
    key = KEYS[0]
    path = write(tmp_path / "known_hosts", f"# note\rnode1 {key}\n")
    assert known_hosts_problem(path) is None
    assert not read_known_hosts(path, "node1").pinned()
