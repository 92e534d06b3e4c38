"""Upstream's official Linux release files: which ones a host needs, where they are, and their cache key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llamafleet.errors import InventoryError

from .groups import CACHE_KEY_LENGTH, digest
from .settings import LlamaCppSettings

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
    return digest([[asset.name, sha] for asset, sha in zip(assets, sha256s, strict=True)])[:CACHE_KEY_LENGTH]
