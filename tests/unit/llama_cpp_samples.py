"""What the llama_cpp tests share: hosts as the inventory resolves them, BUILD.json documents, and a fake
llama.cpp source tree built by the real build.sh with a stand-in cmake, then installed by install.sh."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from llamafleet import connvars, variables
from llamafleet.inventory import Host
from llamafleet.roles.llama_cpp import buildscript, cmake, groups
from llamafleet.roles.llama_cpp import settings as llama_cpp_settings
from llamafleet.roles.llama_cpp.groups import PlatformGroup
from llamafleet.roles.llama_cpp.settings import LlamaCppSettings

SOURCE_SHA = "9f8e" + "0" * 60
OTHER_SHA = "1a2b" + "0" * 60
# The files of a small release, as BUILD.json records them.
FILES = {
    "bin/llama-server": "ab12" + "1" * 60,
    "bin/ggml-rpc-server": "cd34" + "2" * 60,
    "bin/libggml.so.0.9.7": "ef56" + "3" * 60,
}
needs_gnu_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("tar", "gzip", "sha256sum", "c++")),
    reason="needs GNU tar, gzip, sha256sum, c++",
)


def host(name: str = "w1", **overrides: Any) -> Host:
    """A host whose variables are the roles' defaults, llama_cpp_version b11434 and `overrides`."""
    values = {**variables.defaults(), "llama_cpp_version": "b11434", **overrides}
    return Host(name, [], values, connvars.read(name, values)[0])


def settings(host_name: str = "w1", **overrides: Any) -> LlamaCppSettings:
    return llama_cpp_settings.settings(host(host_name, **overrides))


def group_of(host_settings: LlamaCppSettings, distro="debian", version="12", arch="x86_64") -> PlatformGroup:
    return groups.platform_group(host_settings, distro, version, arch)


def manifest(host_settings, source=SOURCE_SHA, version="b11434", files=FILES, distro="debian", release="12"):
    """The BUILD.json a host built from `source` with these settings would hold."""
    group = group_of(host_settings, distro, release)
    backend = host_settings.backend
    args = cmake.cmake_args(version, source, backend, host_settings.cpu_variants, host_settings.cmake_args)
    identifier = groups.release_id(version, backend, groups.artifact_cache_key(source, args, group))
    head = buildscript.manifest_head(version, "build", source, backend, args, group, identifier)
    return buildscript.build_manifest(head, files, {"bin/libggml.so.0": "libggml.so.0.9.7"})


def cluster(**per_host_vars: dict[str, Any]) -> tuple[dict[str, LlamaCppSettings], dict[str, Any]]:
    """Each host's settings and the BUILD.json it holds when it installed what its settings ask for."""
    wanted = {name: settings(name, **extra) for name, extra in per_host_vars.items()}
    return wanted, {name: manifest(host_settings) for name, host_settings in wanted.items()}


# -- build.sh and install.sh run for real, cmake faked -------------------------------------------

FAKE_CMAKE = r"""#!/bin/bash
# Stands in for cmake: configure creates the build dir, build writes one file per target plus a library.
set -euo pipefail
if [ "$1" = "-S" ]; then mkdir -p "$4/bin"; printf '%s\n' "$@" >"$4/configure-args"; exit 0; fi
build=$2; shift 2
while [ "$1" != "--target" ]; do shift; done; shift
for target in "$@"; do printf 'binary %s\n' "$target" >"$build/bin/$target"; done
printf 'library\n' >"$build/bin/libllama.so.0.0.11434"
ln -sf libllama.so.0.0.11434 "$build/bin/libllama.so.0"
"""


def render_build(tmp_path, backend="cpu", variants="native", archive="/srv/src.tar.gz", sha=SOURCE_SHA, extra=()):
    """build.sh for a host with these settings, and its platform group."""
    host_settings = settings(
        llama_cpp_backend=backend, llama_cpp_cpu_variants=variants, llama_cpp_cmake_args=list(extra)
    )
    group = group_of(host_settings)
    return buildscript.render_build_script(host_settings, group, archive, sha, str(tmp_path / "work")), group


def make_source_archive(tmp_path: Path, top="llama.cpp-b11434", worker="ggml-rpc-server") -> tuple[Path, str]:
    """A tarball laid out like a llama.cpp tree (CMakeLists.txt, ggml/, tools/rpc/), and its sha256."""
    archive = tmp_path / "source.tar.gz"
    members = {
        f"{top}/CMakeLists.txt": "project(llama.cpp)\n",
        f"{top}/LICENSE": "MIT\n",
        f"{top}/ggml/CMakeLists.txt": "\n",
        f"{top}/tools/rpc/CMakeLists.txt": f"set(TARGET {worker})\nadd_executable(${{TARGET}} rpc-server.cpp)\n",
    }
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def run_build(tmp_path: Path, archive: Path, sha: str, extra=()) -> tuple[subprocess.CompletedProcess, PlatformGroup]:
    """build.sh run with the fake cmake first on PATH."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "cmake").write_text(FAKE_CMAKE)
    (fake_bin / "cmake").chmod(0o755)
    script, group = render_build(tmp_path, archive=str(archive), sha=sha, extra=extra)
    (tmp_path / "build.sh").write_text(script)
    env = dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(tmp_path / "build.sh")], capture_output=True, text=True, env=env)
    return result, group


def run_install(tmp_path: Path, facts: dict[str, str], keep=3, mode="stage") -> dict[str, str]:
    """install.sh for the built artifact under tmp_path/opt; the LLAMAFLEET_* lines it printed."""
    identifier = Path(facts["manifest"]).parent.name
    context = buildscript.install_script_context(
        facts["artifact"], facts["artifact_sha256"], identifier, keep, str(tmp_path / "opt"), mode=mode
    )
    (tmp_path / "install.sh").write_text(buildscript.render_template(buildscript.INSTALL_TEMPLATE, context))
    result = subprocess.run(["bash", str(tmp_path / "install.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("LLAMAFLEET_"))


def stage_and_switch(tmp_path: Path, facts: dict[str, str], keep=3) -> tuple[dict[str, str], dict[str, str]]:
    return run_install(tmp_path, facts, keep), run_install(tmp_path, facts, keep, mode="switch")
