"""The packages llama.cpp needs per distribution and backend: to build it, to run it; GPU toolkits only checked."""

from __future__ import annotations

import pytest
from recordings import REFERENCE_BUILD

from llamafleet.errors import OperationError
from llamafleet.roles.llama_cpp import dependencies


@pytest.mark.parametrize("distro", ["debian", "ubuntu"])
def test_debian_family_builds_with_build_essential_and_cmake(distro):
    deps = dependencies.build_dependencies(distro, "cpu")
    assert deps.manager == "apt"
    assert {"build-essential", "cmake", "libssl-dev", "libgomp1"} <= set(deps.packages)
    assert "glslc" not in deps.packages


@pytest.mark.parametrize(("distro", "id_like"), [("fedora", ()), ("rhel", ()), ("rocky", ("rhel", "centos", "fedora"))])
def test_redhat_family_builds_with_gcc_and_cmake(distro, id_like):
    deps = dependencies.build_dependencies(distro, "cpu", id_like)
    assert deps.manager == "dnf"
    assert {"gcc", "gcc-c++", "make", "cmake", "openssl-devel"} <= set(deps.packages)


def test_unknown_distribution_falls_back_to_id_like_or_fails():
    assert dependencies.build_dependencies("mint-ish", "cpu", ("ubuntu", "debian")).manager == "apt"
    with pytest.raises(OperationError, match="arch"):
        dependencies.build_dependencies("arch", "cpu")


def test_vulkan_build_adds_headers_and_shader_compiler():
    debian, fedora = (dependencies.build_dependencies(distro, "vulkan").packages for distro in ("debian", "fedora"))
    assert {"libvulkan-dev", "glslc", "spirv-headers"} <= set(debian)
    assert {"vulkan-loader-devel", "glslc"} <= set(fedora)


@pytest.mark.parametrize(("backend", "tool"), [("cuda", "nvcc"), ("rocm", "hipconfig")])
def test_gpu_toolkits_are_checked_not_installed(backend, tool):
    deps = dependencies.build_dependencies("ubuntu", backend)
    assert tool in deps.required_commands
    assert not any("cuda" in package or "rocm" in package or "hip" in package for package in deps.packages)
    assert deps.notes and "installed beforehand" in deps.notes[0]


@pytest.mark.parametrize(
    ("distro", "version", "backend", "expected"),
    [
        ("debian", "12", "cpu", {"libgomp1", "libssl3"}),
        ("ubuntu", "22.04", "cpu", {"libgomp1", "libssl3"}),
        ("ubuntu", "24.04", "cpu", {"libgomp1", "libssl3t64"}),
        ("debian", "11", "cpu", {"libgomp1", "libssl1.1"}),
        ("debian", "", "cpu", {"libgomp1", "libssl3t64"}),
        ("raspbian", "12", "cpu", {"libgomp1", "libssl3"}),
        ("debian", "12", "vulkan", {"libgomp1", "libvulkan1"}),
        ("fedora", "40", "cpu", {"libgomp", "openssl-libs"}),
        ("rhel", "9.4", "vulkan", {"libgomp", "openssl-libs", "vulkan-loader"}),
    ],
)
def test_running_needs_the_release_s_libraries_and_no_development_packages(distro, version, backend, expected):
    deps = dependencies.runtime_dependencies(distro, version, backend)
    assert expected <= set(deps.packages)
    assert not any(package.endswith(("-dev", "-devel")) for package in deps.packages)


def test_runtime_dependencies_cover_the_libraries_the_reference_build_links():
    # ldd of the real reference build: every non-bundled library must come from a runtime package,
    # or from libc6 which every Debian host has.
    ldd = (REFERENCE_BUILD / "ldd-llama-server.txt").read_text()
    system_libraries = {line.split()[0] for line in ldd.splitlines() if "=> /" in line}
    provided_by = {
        "libgomp.so.1": "libgomp1",
        "libssl.so.3": "libssl3",
        "libcrypto.so.3": "libssl3",
        "libstdc++.so.6": "libstdc++6",
    }
    packages = set(dependencies.runtime_dependencies("debian", "12", "cpu").packages)
    for library in system_libraries:
        if library.startswith(("libc.so", "libm.so", "libgcc_s.so", "ld-linux", "libpthread", "libdl")):
            continue
        assert provided_by.get(library) in packages, library
