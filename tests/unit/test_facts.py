"""Facts parsed from recorded command output, and the batch script run for real by a local shell."""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess

import pytest
from recordings import recorded_lines, words

from llamafleet import facts
from llamafleet.facts import FileState

SCRATCH = "/tmp/llamafleet-facts"  # where record_facts.py made the recorded paths
APP_CONF = b"name=w1\nport=50052\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- PathInfo


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("pathinfo_file.txt", FileState("file", 0o640, "root", "root", 19, sha(APP_CONF))),
        ("pathinfo_file_nochecksum.txt", FileState("file", 0o640, "root", "root", 19, None)),
        ("pathinfo_empty_file.txt", FileState("file", 0o600, "root", "root", 0, sha(b""))),
        ("pathinfo_space_semicolon.txt", FileState("file", 0o644, "root", "root", 2, sha(b"x\n"))),
        ("pathinfo_symlink.txt", FileState("link", 0o777, "root", "root", 30, None, f"{SCRATCH}/releases")),
        ("pathinfo_devnull.txt", FileState("other", 0o666, "root", "root", 0, None)),
    ],
)
def test_pathinfo_reads_type_mode_owner_size_checksum_and_link_target(name, state):
    assert facts.PathInfo("/any").process(recorded_lines(name)) == state


def test_pathinfo_of_a_directory_has_no_checksum():
    state = facts.PathInfo("/any").process(recorded_lines("pathinfo_directory.txt"))
    assert (state.type, state.mode, state.owner, state.group, state.sha256) == (
        "directory",
        0o750,
        "root",
        "root",
        None,
    )


@pytest.mark.parametrize("lines", [[], ["stat: cannot statx '/x': No such file or directory"], ["garbage"]])
def test_pathinfo_of_a_missing_path_is_none(lines):
    assert recorded_lines("pathinfo_missing.txt") == []
    assert facts.PathInfo("/x").process(lines) is None


def test_pathinfo_reads_the_checksum_sha256sum_prints_without_openssl():
    # openssl missing on the host: sha256sum prints "HASH  PATH" (or "HASH *PATH" in binary mode)
    digest = sha(APP_CONF)
    for line in (f"{digest}  /etc/app.conf", f"{digest} */etc/app.conf"):
        assert facts.PathInfo("/etc/app.conf").process(["regular file|644|root|root|19", line]).sha256 == digest


def test_pathinfo_command_quotes_the_path():
    path = f"{SCRATCH}/with space; and semicolon.conf"
    split = words(facts.PathInfo(path).command())
    assert split.count(path) == 8, "stat, -L test, readlink, -f, ! -L, sha256sum, openssl, sha256sum"
    assert "and" not in split and "semicolon.conf" not in split
    assert words(facts.PathInfo(path, False).command()).count(path) == 3


def test_pathinfo_with_and_without_checksum_are_different_facts():
    assert facts.PathInfo("/a").key == ("PathInfo", "/a", True)
    assert facts.PathInfo("/a", False).key != facts.PathInfo("/a").key
    assert facts.PathInfo("/a").key == facts.PathInfo("/a", True).key


# --------------------------------------------------------------------------- FileContent


def test_filecontent_tells_an_empty_file_from_a_missing_one():
    assert facts.FileContent("/x").process(recorded_lines("filecontent_present.txt")) == "name=w1\nport=50052"
    assert facts.FileContent("/x").process(recorded_lines("filecontent_missing.txt")) is None
    assert facts.FileContent("/x").process(["present"]) == "", "an empty file is not a missing one"


# --------------------------------------------------------------------------- packages


def test_debpackages_lists_installed_versions_and_omits_missing_packages():
    fact = facts.DebPackages(["libc6", "llamafleet-not-a-package", "bash", "coreutils"])
    assert fact.process(recorded_lines("debpackages.txt")) == {
        "bash": "5.2.15-2+b8",
        "coreutils": "9.1-1",
        "libc6": "2.36-9+deb12u14",
    }
    assert fact.process(recorded_lines("debpackages_none_installed.txt")) == {}


def test_debpackages_omits_removed_and_half_installed_packages():
    found = facts.DebPackages(["x"]).process(recorded_lines("debpackages_states.txt"))
    assert found["procps"] == "2:4.0.2-3"
    assert "iproute2" not in found, "removed, only its config files left (rc)"
    assert "ca-certificates" not in found, "half-installed (iHR)"
    assert "curl" not in found


def test_debpackages_held_package_is_installed():
    found = facts.DebPackages(["openssl"]).process(recorded_lines("debpackages_states.txt"))
    assert found.get("openssl") == "3.0.17-1~deb12u2"


def test_debpackages_key_and_command_sort_and_quote_names():
    one = facts.DebPackages(["procps", "openssl"])
    assert one.key == facts.DebPackages(["openssl", "procps"]).key == ("DebPackages", ("openssl", "procps"))
    split = shlex.split(facts.DebPackages(["a b", "procps"]).command())
    assert split == ["dpkg-query", "-W", "-f=${Package}|${db:Status-Abbrev}|${Version}\\n", "--", "a b", "procps"]


def test_rpmpackages_omits_packages_rpm_says_are_not_installed():
    # rpm_packages.txt is hand-written (no rpm here); rpm prints "package X is not installed" on stdout
    found = facts.RpmPackages(["openssl", "procps-ng", "llamafleet-not-a-package"]).process(
        recorded_lines("rpm_packages.txt")
    )
    assert found == {"openssl": "3.0.7-27.el9", "procps-ng": "3.3.17-14.el9"}


# --------------------------------------------------------------------------- users, OS, systemd


def test_passwd_entry_parses_into_user_fields_and_missing_is_none():
    fact = facts.Passwd("root")
    assert fact.process(recorded_lines("passwd_root.txt")) == {
        "name": "root",
        "uid": "0",
        "gid": "0",
        "comment": "root",
        "home": "/root",
        "shell": "/bin/bash",
    }
    assert fact.process(recorded_lines("passwd_nobody.txt"))["shell"] == "/usr/sbin/nologin"
    assert fact.process(recorded_lines("passwd_missing.txt")) is None
    assert words(facts.Passwd("a;b").command()) == ["getent", "passwd", "--", "a;b"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "os_release_debian12.txt",
            {"id": "debian", "version_id": "12", "family": "debian", "arch": "x86_64", "uid": "0"},
        ),
        (
            "os_release_ubuntu2404_arm64.txt",
            {"id": "ubuntu", "version_id": "24.04", "family": "debian", "arch": "aarch64", "uid": "1000"},
        ),
        (
            "os_release_rocky9.txt",
            {"id": "rocky", "version_id": "9.4", "family": "redhat", "arch": "x86_64", "uid": "0"},
        ),
        (
            "os_release_opensuse_leap155.txt",
            {"id": "opensuse-leap", "version_id": "15.5", "family": "unknown", "arch": "x86_64", "uid": "0"},
        ),
    ],
)
def test_os_release_gives_id_version_family_arch_and_uid(name, expected):
    assert facts.OsRelease().process(recorded_lines(name)) == expected


def test_os_release_is_static_and_empty_output_is_unknown():
    assert facts.OsRelease.static is True
    assert facts.PathInfo.static is False
    assert facts.OsRelease().process([]) == {
        "id": "unknown",
        "version_id": "",
        "family": "unknown",
        "arch": "unknown",
        "uid": "",
    }


# The systemctl_show_*.txt files are written by hand: this controller has no systemd as PID 1.
# They use the KEY=VALUE lines `systemctl show -p ...` prints, empty values included.
@pytest.mark.parametrize(
    ("name", "load", "active", "unit_file"),
    [
        ("systemctl_show_active_enabled.txt", "loaded", "active", "enabled"),
        ("systemctl_show_inactive_disabled.txt", "loaded", "inactive", "disabled"),
        ("systemctl_show_not_found.txt", "not-found", "inactive", ""),
        ("systemctl_show_static.txt", "loaded", "active", "static"),
    ],
)
def test_systemd_unit_reads_load_active_and_unit_file_states(name, load, active, unit_file):
    state = facts.SystemdUnit("llama-rpc.service").process(recorded_lines(name))
    assert (state["LoadState"], state["ActiveState"], state["UnitFileState"]) == (load, active, unit_file)
    assert set(state) == {"LoadState", "ActiveState", "SubState", "UnitFileState", "FragmentPath", "NeedDaemonReload"}


def test_systemd_unit_value_may_contain_equals_sign():
    state = facts.SystemdUnit("x").process(["Environment=A=1 B=2", "no equals sign here"])
    assert state == {"Environment": "A=1 B=2"}


def test_systemd_unit_command_asks_for_six_properties_of_one_quoted_unit():
    split = words(facts.SystemdUnit("llama rpc;x.service").command())
    assert split[:4] == ["systemctl", "show", "--no-pager", "-p"]
    assert split[5:] == ["llama rpc;x.service"]
    assert set(split[4].split(",")) == {
        "LoadState",
        "ActiveState",
        "SubState",
        "UnitFileState",
        "FragmentPath",
        "NeedDaemonReload",
    }


# --------------------------------------------------------------------------- the batch script, run for real

SHELLS = [s for s in ("bash", "dash") if shutil.which(s)]  # sudo runs the script with sh (dash on Debian)


@pytest.fixture
def batch_facts(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_bytes(APP_CONF)
    conf.chmod(0o640)
    (tmp_path / "link").symlink_to(conf)
    return [
        facts.PathInfo(str(conf)),
        facts.PathInfo(str(tmp_path / "missing")),  # stat fails: exit 1, no output
        facts.CommandOutput("printf 'no trailing newline'"),
        facts.CommandOutput("printf 'a\\n\\nb\\n'"),
        facts.CommandOutput("echo visible; echo hidden >&2; false"),
        facts.CommandOutput("cat"),  # stdin is /dev/null: must not wait for input
        facts.PathInfo(str(tmp_path / "link"), False),
        facts.Passwd("root"),
    ]


def run_batch(shell: str, script: str) -> str:
    result = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=20)
    assert result.stderr == "", "each fact's stderr is discarded"
    return result.stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_batch_output_parses_back_into_each_facts_value(shell, batch_facts, tmp_path):
    script, token = facts.batch_script(batch_facts)
    values = facts.parse_batch(batch_facts, run_batch(shell, script), token)
    assert len(values) == len(batch_facts)
    conf, missing, no_newline, blank_line, noisy, stdin, link, root = (values[f.key] for f in batch_facts)
    assert conf.type == "file" and conf.sha256 == sha(APP_CONF) and conf.mode == 0o640
    assert missing is None
    assert no_newline == ["no trailing newline"]
    assert blank_line == ["a", "", "b"]
    assert noisy == ["visible"]
    assert stdin == []
    assert (link.type, link.target) == ("link", str(tmp_path / "app.conf"))
    assert root["home"] == "/root"


@pytest.mark.parametrize("shell", SHELLS)
def test_batch_gives_each_fact_what_it_gets_alone(shell, batch_facts):
    script, token = facts.batch_script(batch_facts)
    together = facts.parse_batch(batch_facts, run_batch(shell, script), token)
    for fact in batch_facts:
        alone = subprocess.run([shell, "-c", fact.command()], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        text = alone.stdout[:-1] if alone.stdout.endswith("\n") else alone.stdout
        assert together[fact.key] == fact.process(text.split("\n") if text else []), fact


def test_batch_token_is_fresh_unless_given():
    fact = [facts.CommandOutput("true")]
    assert facts.batch_script(fact)[1] != facts.batch_script(fact)[1]
    script, token = facts.batch_script(fact, token="cafe01")
    assert token == "cafe01"
    assert run_batch("sh", script) == "@cafe01 0\n\n@cafe01 end 0\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_batch_facts_asked_to_run_at_once_do_so_each_ending_only_itself(shell, tmp_path):
    """The first fact sees a file only the second one makes: one after another it would give up (after 10 s)."""
    flag = tmp_path / "made-by-the-second-fact"
    waits = facts.CommandOutput(
        shlex.join(["sh", "-c", f"for i in $(seq 100); do [ -e {flag} ] && echo seen && exit 3; sleep 0.1; done"])
    )
    batch = [waits, facts.CommandOutput(f"touch {shlex.quote(str(flag))}; exit 5"), facts.CommandOutput("echo last")]
    script, token = facts.batch_script(batch, at_once=True)
    out = run_batch(shell, script)
    assert [facts.parse_batch(batch, out, token)[f.key] for f in batch] == [["seen"], [], ["last"]]
    assert f"@{token} end 3\n" in out and f"@{token} end 5\n" in out


@pytest.mark.parametrize("shell", SHELLS)
def test_batch_at_once_gives_what_one_after_another_gives_also_without_a_temporary_folder(shell, batch_facts, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "mktemp").write_text("#!/bin/sh\nexit 1\n")
    (tools / "mktemp").chmod(0o755)
    script, token = facts.batch_script(batch_facts, at_once=True)
    fallback = f"PATH={shlex.quote(str(tools))}:$PATH; export PATH\n{script}"
    in_turn = facts.parse_batch(batch_facts, run_batch(shell, facts.batch_script(batch_facts, token)[0]), token)
    assert facts.parse_batch(batch_facts, run_batch(shell, script), token) == in_turn
    assert facts.parse_batch(batch_facts, run_batch(shell, fallback), token) == in_turn


def test_batch_output_that_looks_like_a_marker_stays_output(tmp_path):
    fact = [facts.CommandOutput("echo '@deadbeef end 0'; echo '@deadbeef 1'"), facts.CommandOutput("echo second")]
    script, token = facts.batch_script(fact, token="0123abcd")
    values = facts.parse_batch(fact, run_batch("bash", script), token)
    assert values[fact[0].key] == ["@deadbeef end 0", "@deadbeef 1"]
    assert values[fact[1].key] == ["second"]


def test_batch_output_cut_before_a_marker_raises_value_error(batch_facts):
    script, token = facts.batch_script(batch_facts)
    stdout = run_batch("bash", script)
    cut = stdout[: stdout.rindex(f"@{token} end")]  # the connection dropped before the last fact ended
    with pytest.raises(ValueError, match=r"missing Passwd\('root',\)"):
        facts.parse_batch(batch_facts, cut, token)
    with pytest.raises(ValueError, match="fact output incomplete"):
        facts.parse_batch(batch_facts, stdout, "ffffffffffff")


# --------------------------------------------------------------------------- facts of a kind read together


@pytest.fixture
def many_paths(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_bytes(APP_CONF)
    conf.chmod(0o640)
    (tmp_path / "empty").touch()
    (tmp_path / "odd name | *").write_bytes(b"x\n")
    (tmp_path / "link").symlink_to(conf)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    big = tmp_path / "big"
    with big.open("wb") as handle:
        handle.truncate(facts.LARGE_FILE + 1)
    names = ["app.conf", "empty", "odd name | *", "link", "dangling", "big", "missing", ".", "app.conf"]
    return [facts.PathInfo(str(tmp_path / n), checksum) for n in names for checksum in (True, False)]


@pytest.mark.parametrize("shell", SHELLS)
def test_paths_read_together_by_one_stat_give_what_each_gets_alone(shell, many_paths):
    script, token = facts.batch_script(many_paths)
    assert script.count("stat -c") == 1, "one stat reads every path"
    together = facts.split_batch(many_paths, run_batch(shell, script), token)
    for fact, lines in together:
        alone = subprocess.run([shell, "-c", fact.command()], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        text = alone.stdout[:-1] if alone.stdout.endswith("\n") else alone.stdout
        assert lines == (text.split("\n") if text else []), fact


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="no dpkg-query here")
def test_packages_read_together_by_one_dpkg_query_give_what_each_gets_alone():
    asked = [facts.DebPackages(["dpkg", "no-such-package-x"]), facts.DebPackages(["coreutils", "dpkg"])]
    script, token = facts.batch_script(asked)
    assert script.count("dpkg-query") == 1
    together = dict(facts.split_batch(asked, run_batch("sh", script), token))
    for fact in asked:
        alone = subprocess.run(["sh", "-c", fact.command()], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert sorted(together[fact]) == sorted(alone.stdout.splitlines()), fact
        assert fact.process(together[fact]) == fact.process(alone.stdout.splitlines())


def test_units_read_together_are_split_back_one_block_per_unit_in_the_order_named():
    units = [facts.SystemdUnit(u) for u in ("nosuch.service", "nftables.service", "llama-server.service")]
    asked = [units[2], units[0], units[1], units[2]]
    command = facts.SystemdUnit.together(asked)
    assert words(command)[5:] == ["llama-server.service", "nosuch.service", "nftables.service"]
    recorded = recorded_lines("systemdunits_together.txt")  # the same units, named in the recording's order
    blocks = facts.SystemdUnit.apart(units, recorded)
    assert [facts.SystemdUnit("x").process(b)["LoadState"] for b in blocks] == ["not-found", "loaded", "loaded"]
    assert blocks[2][-1] == "NeedDaemonReload=no" and "" not in blocks[0]
    with pytest.raises(ValueError, match="2 block"):
        facts.SystemdUnit.apart(units, recorded[: recorded.index("", 8)])


def test_only_unit_names_and_plain_package_names_join_a_batch():
    assert facts.SystemdUnit("wg-quick@lfwg0.service").joins()
    assert not facts.SystemdUnit("llama rpc;x.service").joins()
    assert facts.DebPackages(["libstdc++6", "ca-certificates"]).joins()
    assert not facts.DebPackages(["libc6:amd64"]).joins() and not facts.DebPackages(["lib*"]).joins()
    assert facts.PathInfo("/a b|c").joins() and not facts.PathInfo("/a\nb").joins()


@pytest.mark.parametrize(
    "fact",
    [
        facts.PathInfo("/etc/llamafleet/host.yml"),
        facts.PathInfo("/opt/llama.cpp/current", False),
        facts.PathInfo("/tmp/odd name; 'quoted' $x"),
        facts.SystemdUnit("wg-quick@lfwg0.service"),
        facts.DebPackages(["openssl", "ca-certificates"]),
    ],
)
def test_a_remembered_command_becomes_the_fact_that_reads_it(fact):
    found = facts.from_command(fact.command())
    assert (type(found), found.key, found.command()) == (type(fact), fact.key, fact.command())


@pytest.mark.parametrize(
    "command",
    [
        facts.PathInfo("/a\nb").command(),  # does not join: read as it is
        facts.SystemdUnit("llama rpc;x.service").command(),
        facts.PathInfo("/x").command() + "; true",
        "cat /etc/os-release",
    ],
)
def test_any_other_remembered_command_is_read_as_it_is(command):
    found = facts.from_command(command)
    assert isinstance(found, facts.CommandOutput) and found.command() == command
