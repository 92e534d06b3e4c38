"""Platform groups: which hosts can share one build, and the cache keys and release names derived from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llamafleet import paths

from .settings import LlamaCppSettings

CACHE_KEY_LENGTH = 16
RELEASE_KEY_LENGTH = 12


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


def digest(payload: object) -> str:
    """sha256 of `payload` as canonical JSON: equal payloads, equal keys, on any controller."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def artifact_cache_key(source_sha256: str, configure_args: Sequence[str], group: PlatformGroup) -> str:
    """Same source, flags and platform group -> same key -> build once and reuse."""
    payload = {"source_sha256": source_sha256, "cmake_args": list(configure_args), "platform": group.as_dict()}
    return digest(payload)[:CACHE_KEY_LENGTH]


def release_id(version: str, backend: str, key: str) -> str:
    """The directory name under /opt/llama.cpp/releases, e.g. b11434-cpu-0123456789ab."""
    return f"{version}-{backend}-{key[:RELEASE_KEY_LENGTH]}"


def release_dir(identifier: str) -> str:
    return f"{paths.RELEASES_DIR}/{identifier}"
