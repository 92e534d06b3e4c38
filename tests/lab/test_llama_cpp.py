"""Role llama_cpp in the lab: one build, identical installs, nothing to do the second time, the gate."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.lab.labtools import VERSION, invoke_json, release_tarball, release_vars, served_folder, source_vars, ssh

CURRENT = "/opt/llama.cpp/current"


def provision(inventory: str, env: dict[str, str], *extra: str) -> tuple[int, dict]:
    return invoke_json("provision", inventory, env, *extra)


@pytest.fixture(scope="module")
def runs(lab, admin_inventory, source, env):
    """Two provisions in a row from bare hosts: the first (which builds and fetches the artifact from
    a root-only folder) as a non-root login user through sudo, the second as root."""
    first = provision(admin_inventory, env, *source_vars(source))
    second = provision(lab.inventory, env, *source_vars(source))
    return first, second


def builds(doc: dict) -> list[dict]:
    """The build operations that ran (`llama.cpp <version> built for <platform group>`, changed)."""
    return [r for r in doc["results"] if " built for " in r["operation"] and r["status"] == "changed"]


def test_first_provision_builds_once_and_installs_everywhere(runs, lab):
    (code, doc), _ = runs
    failed = [r for r in doc["results"] if r["status"] in ("failed", "unreachable")]
    assert code == 0, failed or doc["messages"]
    reused = bool(os.environ.get("LLAMAFLEET_TEST_CACHE"))  # a cache given to the session: built before
    assert len(builds(doc)) == (0 if reused else 1), "one platform group, one build"
    for step in (" staged", " current"):  # staged everywhere first, then switched everywhere
        done = [r for r in doc["results"] if r["operation"].endswith(step) and r["status"] == "changed"]
        assert sorted(r["host"] for r in done) == ["head", "w1", "w2"], step
    roles = [r["role"] for r in doc["results"]]
    assert max(i for i, role in enumerate(roles) if role == "llama_cpp") < roles.index("release")


def test_become_wrote_exactly_the_files_root_would_write(runs, lab, admin_inventory):
    """What sudo wrote for the non-root login user is byte for byte what root writes (second run: 0 changed),
    and the sudo password is in no file, also on the head, whose sudo never asks for it."""
    (code, doc), _ = runs
    assert code == 0
    password = yaml.safe_load(Path(admin_inventory).read_text())["all"]["vars"]["ansible_become_password"]
    for host in ("head", "w1", "w2"):
        found = ssh(lab, host, f"grep -rlF -- {password} /etc /opt/llama.cpp /var/lib/llamafleet; true")
        assert found.stdout == "", (host, found.stdout)
        owner = ssh(lab, host, "stat -c %U /etc/llamafleet/host.yml /opt/llama.cpp/current/BUILD.json")
        assert owner.stdout.split() == ["root", "root"], (host, owner.stdout, owner.stderr)


def test_every_host_runs_the_pinned_identical_build(runs, lab):
    digests = set()
    for host in ("head", "w1", "w2"):
        version = ssh(lab, host, f"{CURRENT}/bin/llama-server --version")
        assert "build 11434" in version.stderr, (host, version.stderr)
        listing = ssh(lab, host, f"cd {CURRENT}/ && sha256sum bin/* BUILD.json")
        assert listing.returncode == 0, listing.stderr
        digests.add(listing.stdout)
        assert ssh(lab, host, f"test -x {CURRENT}/bin/ggml-rpc-server").returncode == 0
    assert len(digests) == 1, "binaries, libraries and BUILD.json are byte-identical on every host"


def test_second_provision_changes_nothing(runs):
    _, (code, doc) = runs
    assert code == 0
    assert not builds(doc)
    changed = [(r["host"], r["operation"], r["reason"]) for r in doc["results"] if r["status"] == "changed"]
    assert {h: c["changed"] for h, c in doc["recap"].items()} == {"head": 0, "w1": 0, "w2": 0}, changed
    # OS facts, base facts, llama_cpp planning facts, its operations' facts, release's (the gate
    # reuses them);
    # firewall: which frontend (auto), its operations' facts; then rpc_worker's, or on the head the
    # deployed model and head's facts. Nothing to change costs no round trip beyond these.
    limits = {"head": 9, "w1": 8, "w2": 8}
    assert all(n <= limits[h] for h, n in doc["round_trips"].items()), doc["round_trips"]


def tiny_source_archive(folder: Path, top: str) -> Path:
    """An archive whose top folder names a build (enough for the pin check; never built here)."""
    path = folder / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{top}/CMakeLists.txt")
        tar.addfile(info, io.BytesIO(b""))
    return path


def test_mixed_versions_stop_before_any_build(lab, source, env, tmp_path):
    shutil.copy(lab.inventory, tmp_path / "hosts.yml")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars/all.yml").write_text(f"llama_cpp_version: {VERSION}\nllama_cpp_source_archive: {source}\n")
    (tmp_path / "host_vars").mkdir()
    older = tiny_source_archive(tmp_path, "llama.cpp-b11433")
    (tmp_path / "host_vars/w2.yml").write_text(f"llama_cpp_version: b11433\nllama_cpp_source_archive: {older}\n")
    code, doc = provision(str(tmp_path / "hosts.yml"), env)
    assert code == 4
    gate = [m for m in doc["messages"] if m.startswith("gate llama_cpp")]
    assert gate and "w2 wants b11433" in gate[0], doc["messages"]
    assert not builds(doc)


def test_a_replaced_binary_is_reinstalled_from_the_cache_naming_the_file(runs, lab, source, env):
    assert ssh(lab, "w1", f"cp /bin/true {CURRENT}/bin/llama-bench").returncode == 0
    code, doc = provision(lab.inventory, env, *source_vars(source))
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    repaired = [r for r in doc["results"] if r["status"] == "changed" and r["operation"].endswith(" staged")]
    assert [(r["host"], r["reason"]) for r in repaired] == [
        ("w1", "files differ from the artifact, reinstalled: bin/llama-bench")
    ]
    assert not builds(doc), "reinstalled from the artifact cache, not rebuilt"
    listing = {h: ssh(lab, h, f"sha256sum {CURRENT}/bin/llama-bench").stdout.split()[0] for h in ("head", "w1")}
    assert listing["w1"] == listing["head"]


@pytest.fixture
def release_server(env, tmp_path):
    """An upstream-style release tarball made from the lab build, served on loopback."""
    with served_folder(release_tarball(env, tmp_path)) as url:
        yield url


def test_release_install_then_back_to_the_build(runs, lab, source, env, release_server):
    code, doc = provision(lab.inventory, env, *release_vars(release_server))
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    for host in ("head", "w1", "w2"):
        manifest = json.loads(ssh(lab, host, f"cat {CURRENT}/BUILD.json").stdout)
        assert manifest["install"] == "release"
        assert "build 11434" in ssh(lab, host, f"{CURRENT}/bin/llama-server --version").stderr
    # Back to the build: cached artifact, previous release kept, current switched back.
    code, doc = provision(lab.inventory, env, *source_vars(source))
    assert code == 0 and not builds(doc)
    assert json.loads(ssh(lab, "w2", f"cat {CURRENT}/BUILD.json").stdout)["install"] == "build"
    releases = ssh(lab, "w2", "ls /opt/llama.cpp/releases").stdout.split()
    assert len(releases) == 2, releases
    assert yaml.safe_load(Path(lab.inventory).read_text())["all"]["vars"]["llama_cpp_cpu_variants"] == "native"
