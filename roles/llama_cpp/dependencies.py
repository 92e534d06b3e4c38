"""The distribution packages llama.cpp needs: to build it on a build host, to run it on every host."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from llamafleet.errors import OperationError

DEBIAN_LIKE = ("debian", "ubuntu", "raspbian", "linuxmint", "pop")
REDHAT_LIKE = ("fedora", "rhel", "centos", "rocky", "almalinux", "ol")


@dataclass(frozen=True)
class Dependencies:
    """Distro packages to install, plus toolkits we only check for (never install)."""

    manager: str
    packages: tuple[str, ...]
    required_commands: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def distro_family(distro_id: str, id_like: Iterable[str] = ()) -> str:
    """debian or redhat, from /etc/os-release ID and ID_LIKE."""
    for candidate in (distro_id, *id_like):
        if candidate in DEBIAN_LIKE:
            return "debian"
        if candidate in REDHAT_LIKE:
            return "redhat"
    raise OperationError(f"unsupported distribution {distro_id!r}: llama_cpp knows debian/ubuntu and fedora/rhel")


def _toolkit_requirements(backend: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if backend == "cuda":
        return ("nvcc",), ("CUDA needs the NVIDIA CUDA toolkit (nvcc) and driver, installed beforehand",)
    if backend == "rocm":
        return ("hipconfig",), ("ROCm needs the AMD ROCm/HIP SDK (hipconfig, hipblas, rocblas), installed beforehand",)
    return (), ()


def build_dependencies(distro_id: str, backend: str, id_like: Iterable[str] = ()) -> Dependencies:
    """Packages a build host needs for this backend; CUDA/ROCm toolkits are checked, not installed."""
    family = distro_family(distro_id, id_like)
    if family == "debian":
        manager, packages = "apt", ["build-essential", "cmake", "libssl-dev", "libgomp1"]
        vulkan = ["libvulkan-dev", "glslc", "spirv-headers"]
    else:
        manager, packages = "dnf", ["gcc", "gcc-c++", "make", "cmake", "openssl-devel", "libgomp"]
        vulkan = ["vulkan-loader-devel", "glslc", "spirv-headers-devel"]
    if backend == "vulkan":
        packages += vulkan
    return Dependencies(manager, tuple(packages), build_tools(backend), _toolkit_requirements(backend)[1])


def build_tools(backend: str) -> tuple[str, ...]:
    """Commands build.sh checks for before configuring (the same on every distribution)."""
    return ("cmake", "c++", *_toolkit_requirements(backend)[0])


def _libssl_package(distro_id: str, version_id: str) -> str:
    # Debian 13 and Ubuntu 24.04 renamed the library package in the 64-bit time_t transition;
    # Debian testing/sid has no VERSION_ID and is past it.
    match = re.match(r"\d+(\.\d+)?", version_id or "")
    number = float(match[0]) if match else None
    newest = {"debian": 13.0, "ubuntu": 24.04}.get(distro_id)
    oldest = {"debian": 12.0, "ubuntu": 22.04}.get(distro_id)
    if newest is None or oldest is None:
        return "libssl3"
    if number is None or number >= newest:
        return "libssl3t64"
    return "libssl3" if number >= oldest else "libssl1.1"


def runtime_dependencies(distro_id: str, version_id: str, backend: str, id_like: Iterable[str] = ()) -> Dependencies:
    """Packages a host needs to run the binaries (OpenMP, OpenSSL, C++ runtime, Vulkan loader)."""
    if distro_family(distro_id, id_like) == "debian":
        manager, packages = "apt", ["libgomp1", _libssl_package(distro_id, version_id), "libstdc++6"]
        vulkan = ["libvulkan1"]
    else:
        manager, packages = "dnf", ["libgomp", "openssl-libs", "libstdc++"]
        vulkan = ["vulkan-loader"]
    notes: tuple[str, ...] = ()
    if backend == "vulkan":
        packages += vulkan
        notes = ("Vulkan also needs the GPU vendor's ICD driver (mesa-vulkan-drivers or the NVIDIA driver)",)
    elif backend in ("cuda", "rocm"):
        notes = _toolkit_requirements(backend)[1]
    return Dependencies(manager, tuple(packages), (), notes)
