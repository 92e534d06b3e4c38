"""Pure planning for the llama_cpp role: settings, dependencies, cmake flags, artifacts, BUILD.json, identity gate."""

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llamafleet import paths, yamlfile
from llamafleet.errors import InventoryError, OperationError

ROLE_DIR = Path(__file__).resolve().parent
DEFAULTS_FILE = ROLE_DIR / "defaults.yml"
BUILD_TEMPLATE = "build.sh.j2"
INSTALL_TEMPLATE = "install.sh.j2"
SUMS_RECORD = ".llamafleet-sums"  # in each release, beside BUILD.json (see role.IDENTITY)
# What the record holds, run in a release folder: the files' stat listing (size, mtime, inode, ctime, path),
# then their sha256. install.sh.j2 writes both at install; role.IDENTITY compares the listing later.
_SUMS_FILES = f"find . -type f ! -name BUILD.json ! -name '{SUMS_RECORD}*'"
SUMS_LISTING = _SUMS_FILES + " -printf '%s %T@ %i %C@ %p\\n' | LC_ALL=C sort"
SUMS_HASHES = _SUMS_FILES + ' -exec sh -c \'openssl dgst -sha256 -r "$@" 2>/dev/null || sha256sum "$@"\' sh {} +'

BACKENDS = ("cpu", "cuda", "vulkan", "rocm")
CPU_VARIANTS = ("all", "native")
INSTALL_METHODS = ("build", "release")

INSTALL_ROOT = paths.INSTALL_ROOT
RELEASES_DIR = paths.RELEASES_DIR
CURRENT_LINK = paths.CURRENT_LINK
MANIFEST_NAME = "BUILD.json"
MANIFEST_SCHEMA = 1

SERVER_TARGET = "llama-server"
BENCH_TARGET = "llama-bench"
# Current trees call the worker ggml-rpc-server, older ones rpc-server; first match wins.
WORKER_TARGETS = ("ggml-rpc-server", "rpc-server")

VERSION_PATTERN = re.compile(r"b(\d+)")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
CACHE_KEY_LENGTH = 16
RELEASE_KEY_LENGTH = 12

# Linux release assets became .tar.gz (symlinks kept) around this build; before it only .zip existed.
RELEASE_TAR_GZ_SINCE = 7312
# Official Linux release assets as published by upstream's release workflow at b11434:
# (backend, release arch) -> toolkit label -> asset flavour ("" when there is no toolkit).
RELEASE_FLAVOURS: dict[tuple[str, str], dict[str, str]] = {
    ("cpu", "x64"): {"": "ubuntu-x64"},
    ("cpu", "arm64"): {"": "ubuntu-arm64"},
    ("cpu", "s390x"): {"": "ubuntu-s390x"},
    ("vulkan", "x64"): {"": "ubuntu-vulkan-x64"},
    ("vulkan", "arm64"): {"": "ubuntu-vulkan-arm64"},
    ("cuda", "x64"): {"12.8": "ubuntu-cuda-12.8-x64", "13.4": "ubuntu-cuda-13.4-x64"},
    ("cuda", "arm64"): {"13.4": "ubuntu-cuda-13.4-arm64"},
    ("rocm", "x64"): {"10.0": "ubuntu-rocm-10.0-x64"},
}
RELEASE_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "s390x": "s390x"}

DEBIAN_LIKE = ("debian", "ubuntu", "raspbian", "linuxmint", "pop")
REDHAT_LIKE = ("fedora", "rhel", "centos", "rocky", "almalinux", "ol")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LlamaCppSettings:
    """One host's llama_cpp_* variables after defaults and validation."""

    host: str
    version: str
    install: str
    backend: str
    source_url: str
    source_archive: str | None
    source_sha256: str | None
    cpu_variants: str
    cmake_args: tuple[str, ...]
    gpu_targets: tuple[str, ...]
    keep_releases: int
    release_url: str
    release_sha256: str | None
    release_toolkit: str | None

    @property
    def build_number(self) -> int:
        return int(self.version[1:])


def load_defaults(path: Path = DEFAULTS_FILE) -> dict[str, dict[str, Any]]:
    """The role's variable table: name -> {default, type, choices, required, doc}."""
    return yamlfile.load_own(path)


def build_number(version: object, host: str = "all") -> int:
    """The number N of a b<N> tag; InventoryError naming host and key otherwise."""
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise InventoryError(
            f"{version!r} is not a llama.cpp build tag like b11434", where=host, key="llama_cpp_version"
        )
    return int(version[1:])


def checked_sha256(value: object, host: str, key: str) -> str:
    """A sha256 hex digest, lower-cased; InventoryError naming host and key otherwise."""
    if not isinstance(value, str) or not SHA256_PATTERN.fullmatch(value.lower()):
        raise InventoryError(f"{value!r} is not a sha256 (64 hex digits)", where=host, key=key)
    return value.lower()


def _choice(value: object, choices: Sequence[str], host: str, key: str) -> str:
    if value not in choices:
        raise InventoryError(f"{value!r} is not one of {', '.join(choices)}", where=host, key=key)
    return str(value)


def _string_list(value: object, host: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InventoryError("must be a list of strings", where=host, key=key)
    return tuple(value)


def _optional_sha256(value: object, host: str, key: str) -> str | None:
    return None if value in (None, "") else checked_sha256(value, host, key)


def settings_for_host(host: str, host_vars: Mapping[str, Any]) -> LlamaCppSettings:
    """Apply the role defaults to one host's variables and validate every llama_cpp_* value."""
    merged = {name: spec["default"] for name, spec in load_defaults().items()} | dict(host_vars)
    if merged.get("llama_cpp_version") in (None, ""):
        raise InventoryError("is required (a build tag like b11434)", where=host, key="llama_cpp_version")
    version = merged["llama_cpp_version"]
    build_number(version, host)
    keep = merged["llama_cpp_keep_releases"]
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InventoryError(f"{keep!r} is not a whole number >= 1", where=host, key="llama_cpp_keep_releases")
    return LlamaCppSettings(
        host=host,
        version=version,
        install=_choice(merged["llama_cpp_install"], INSTALL_METHODS, host, "llama_cpp_install"),
        backend=_choice(merged["llama_cpp_backend"], BACKENDS, host, "llama_cpp_backend"),
        source_url=str(merged["llama_cpp_source_url"]).format(version=version),
        source_archive=merged["llama_cpp_source_archive"] or None,
        source_sha256=_optional_sha256(merged["llama_cpp_source_sha256"], host, "llama_cpp_source_sha256"),
        cpu_variants=_choice(merged["llama_cpp_cpu_variants"], CPU_VARIANTS, host, "llama_cpp_cpu_variants"),
        cmake_args=_string_list(merged["llama_cpp_cmake_args"], host, "llama_cpp_cmake_args"),
        gpu_targets=_string_list(merged["llama_cpp_gpu_targets"], host, "llama_cpp_gpu_targets"),
        keep_releases=keep,
        release_url=str(merged["llama_cpp_release_url"]).format(version=version),
        release_sha256=_optional_sha256(merged["llama_cpp_release_sha256"], host, "llama_cpp_release_sha256"),
        release_toolkit=merged["llama_cpp_release_toolkit"] or None,
    )


# --------------------------------------------------------------------------- dependencies


@dataclass(frozen=True)
class PackagePlan:
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


def build_dependencies(distro_id: str, backend: str, id_like: Iterable[str] = ()) -> PackagePlan:
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
    return PackagePlan(manager, tuple(packages), build_tools(backend), _toolkit_requirements(backend)[1])


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


def runtime_dependencies(distro_id: str, version_id: str, backend: str, id_like: Iterable[str] = ()) -> PackagePlan:
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
    return PackagePlan(manager, tuple(packages), (), notes)


# --------------------------------------------------------------------------- build plan


def build_commit_label(source_sha256: str) -> str:
    """What --version shows as the commit: archives carry no git metadata, so name the source by its hash."""
    return f"src-{source_sha256[:12]}"


def _backend_args(backend: str, gpu_targets: Sequence[str]) -> list[str]:
    targets = ";".join(gpu_targets)
    if backend == "cuda":
        return ["-DGGML_CUDA=ON"] + ([f"-DCMAKE_CUDA_ARCHITECTURES={targets}"] if targets else [])
    if backend == "vulkan":
        return ["-DGGML_VULKAN=ON"]
    if backend == "rocm":
        return ["-DGGML_HIP=ON"] + ([f"-DGPU_TARGETS={targets}"] if targets else [])
    return []


def cmake_args(
    version: str,
    source_sha256: str,
    backend: str,
    cpu_variants: str,
    extra_args: Sequence[str] = (),
    gpu_targets: Sequence[str] = (),
) -> list[str]:
    """The full cmake configure arguments; the user's extra args come last so they win."""
    args = [
        "-DCMAKE_BUILD_TYPE=Release",
        # Same as upstream releases: binaries find the .so files next to them wherever unpacked.
        "-DCMAKE_INSTALL_RPATH=$ORIGIN",
        "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
        "-DGGML_RPC=ON",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        # Otherwise the build fetches the web UI from the internet: offline hosts and
        # reproducible artifacts need it off (pass -DLLAMA_USE_PREBUILT_UI=ON to opt in).
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        f"-DLLAMA_BUILD_NUMBER={build_number(version)}",
        f"-DLLAMA_BUILD_COMMIT={build_commit_label(source_sha256)}",
    ]
    if cpu_variants == "all":
        args += ["-DGGML_BACKEND_DL=ON", "-DGGML_NATIVE=OFF", "-DGGML_CPU_ALL_VARIANTS=ON"]
    else:
        args += ["-DGGML_NATIVE=ON"]
    return args + _backend_args(backend, gpu_targets) + list(extra_args)


def build_targets() -> list[str]:
    """Targets built besides the worker, whose name depends on the tree (see WORKER_TARGETS)."""
    return [SERVER_TARGET, BENCH_TARGET]


def find_source_root(member_names: Iterable[str]) -> str:
    """Top directory of the llama.cpp tree in an archive listing (sdist: .../llama.cpp, tag archive: llama.cpp-bN)."""
    names = {name.rstrip("/") for name in member_names}
    roots = sorted(
        (name[: -len("CMakeLists.txt")].rstrip("/") for name in names if name.endswith("CMakeLists.txt")),
        key=lambda root: (root.count("/"), root),
    )
    for root in roots:
        prefix = f"{root}/" if root else ""
        if any(name.startswith((f"{prefix}tools/", f"{prefix}ggml/")) for name in names):
            return root
    raise OperationError("archive holds no llama.cpp tree (a CMakeLists.txt beside tools/ or ggml/)")


# --------------------------------------------------------------------------- platform groups and keys


@dataclass(frozen=True)
class PlatformGroup:
    """Hosts that can share one build artifact."""

    distro_id: str
    version_id: str
    arch: str
    backend: str
    cpu_variants: str
    extra_cmake_args: tuple[str, ...] = ()
    gpu_targets: tuple[str, ...] = ()
    # Only for native builds: CPUs that differ in instruction sets must not share -march=native code.
    cpu_signature: str = ""

    @property
    def name(self) -> str:
        return f"{self.distro_id}-{self.version_id}-{self.arch}-{self.backend}-{self.cpu_variants}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra_cmake_args"] = list(self.extra_cmake_args)
        data["gpu_targets"] = list(self.gpu_targets)
        return {"name": self.name, **data}


def platform_group(
    settings: LlamaCppSettings, distro_id: str, version_id: str, arch: str, cpu_signature: str = ""
) -> PlatformGroup:
    """The group of a host from its settings and facts (os-release ID/VERSION_ID, uname -m)."""
    return PlatformGroup(
        distro_id=distro_id,
        version_id=version_id,
        arch=arch,
        backend=settings.backend,
        cpu_variants=settings.cpu_variants,
        extra_cmake_args=settings.cmake_args,
        gpu_targets=settings.gpu_targets,
        cpu_signature=cpu_signature if settings.cpu_variants == "native" else "",
    )


def cpu_signature(cpuinfo_flags: Iterable[str]) -> str:
    """A short digest of the CPU feature flags, so native builds are shared only by identical ISAs."""
    return hashlib.sha256(" ".join(sorted(set(cpuinfo_flags))).encode()).hexdigest()[:12]


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def artifact_cache_key(source_sha256: str, configure_args: Sequence[str], group: PlatformGroup) -> str:
    """Same source, flags and platform group -> same key -> build once and reuse."""
    return _digest({"source_sha256": source_sha256, "cmake_args": list(configure_args), "platform": group.as_dict()})[
        :CACHE_KEY_LENGTH
    ]


def release_id(version: str, backend: str, key: str) -> str:
    """The directory name under /opt/llama.cpp/releases, e.g. b11434-cpu-0123456789ab."""
    return f"{version}-{backend}-{key[:RELEASE_KEY_LENGTH]}"


def release_dir(identifier: str) -> str:
    return f"{RELEASES_DIR}/{identifier}"


# --------------------------------------------------------------------------- official release assets


@dataclass(frozen=True)
class ReleaseAsset:
    """One file to download from the official release page."""

    name: str
    url: str
    top_dir: str


def _release_flavour(host: str, backend: str, arch: str, toolkit: str | None) -> tuple[str, str]:
    release_arch = RELEASE_ARCH.get(arch)
    flavours = RELEASE_FLAVOURS.get((backend, release_arch or arch))
    if not flavours:
        raise InventoryError(
            f"no official Linux release of llama.cpp for backend {backend} on {arch}: use llama_cpp_install: build",
            where=host,
            key="llama_cpp_install",
        )
    label = toolkit if toolkit is not None else next(iter(flavours))
    if label not in flavours:
        offered = ", ".join(flavours) or "none"
        raise InventoryError(
            f"{backend} release on {arch} comes for toolkit {offered}, not {label!r}",
            where=host,
            key="llama_cpp_release_toolkit",
        )
    return flavours[label], label


def release_assets(settings: LlamaCppSettings, arch: str) -> list[ReleaseAsset]:
    """Official release files for this host (CUDA adds the cudart runtime tarball), with URLs."""
    flavour, _ = _release_flavour(settings.host, settings.backend, arch, settings.release_toolkit)
    suffix = ".tar.gz" if settings.build_number >= RELEASE_TAR_GZ_SINCE else ".zip"
    base = settings.release_url if settings.release_url.endswith("/") else settings.release_url + "/"
    main = f"llama-{settings.version}-bin-{flavour}"
    assets = [ReleaseAsset(main + suffix, base + main + suffix, f"llama-{settings.version}")]
    if settings.backend == "cuda":
        cudart = f"cudart-{main}"
        assets.append(ReleaseAsset(cudart + suffix, base + cudart + suffix, cudart))
    return assets


def release_cache_key(assets: Sequence[ReleaseAsset], sha256s: Sequence[str]) -> str:
    """Key of a release install: the exact files downloaded."""
    return _digest([[asset.name, sha] for asset, sha in zip(assets, sha256s, strict=True)])[:CACHE_KEY_LENGTH]
