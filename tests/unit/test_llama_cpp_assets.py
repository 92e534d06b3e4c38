"""Upstream's official release files: named and found as its release workflow publishes them, or a clear refusal."""

from __future__ import annotations

import pytest
from llama_cpp_samples import OTHER_SHA, SOURCE_SHA, settings

from llamafleet.errors import InventoryError
from llamafleet.roles.llama_cpp import assets, groups

BASE = "https://github.com/ggml-org/llama.cpp/releases/download/b11434/"


@pytest.mark.parametrize(
    ("backend", "arch", "toolkit", "names"),
    [
        ("cpu", "x86_64", None, ["llama-b11434-bin-ubuntu-x64.tar.gz"]),
        ("cpu", "aarch64", None, ["llama-b11434-bin-ubuntu-arm64.tar.gz"]),
        ("vulkan", "x86_64", None, ["llama-b11434-bin-ubuntu-vulkan-x64.tar.gz"]),
        (
            "cuda",
            "x86_64",
            None,
            ["llama-b11434-bin-ubuntu-cuda-12.8-x64.tar.gz", "cudart-llama-b11434-bin-ubuntu-cuda-12.8-x64.tar.gz"],
        ),
        (
            "cuda",
            "x86_64",
            "13.4",
            ["llama-b11434-bin-ubuntu-cuda-13.4-x64.tar.gz", "cudart-llama-b11434-bin-ubuntu-cuda-13.4-x64.tar.gz"],
        ),
        (
            "cuda",
            "aarch64",
            None,
            ["llama-b11434-bin-ubuntu-cuda-13.4-arm64.tar.gz", "cudart-llama-b11434-bin-ubuntu-cuda-13.4-arm64.tar.gz"],
        ),
        ("rocm", "x86_64", None, ["llama-b11434-bin-ubuntu-rocm-10.0-x64.tar.gz"]),
    ],
)
def test_release_files_are_named_and_found_as_upstream_publishes_them(backend, arch, toolkit, names):
    host = settings(llama_cpp_install="release", llama_cpp_backend=backend, llama_cpp_release_toolkit=toolkit)
    found = assets.release_assets(host, arch)
    assert [asset.name for asset in found] == names
    assert [asset.url for asset in found] == [BASE + name for name in names]
    assert found[0].top_dir == "llama-b11434"


def test_old_releases_are_zip_and_mirrors_keep_names():
    host = settings(llama_cpp_version="b5000", llama_cpp_release_url="https://mirror.example/llama/{version}")
    (asset,) = assets.release_assets(host, "x86_64")
    assert asset.name == "llama-b5000-bin-ubuntu-x64.zip"
    assert asset.url == "https://mirror.example/llama/b5000/llama-b5000-bin-ubuntu-x64.zip"


@pytest.mark.parametrize(
    ("backend", "arch", "toolkit", "key"),
    [
        ("rocm", "aarch64", None, "llama_cpp_install"),
        ("vulkan", "s390x", None, "llama_cpp_install"),
        ("cpu", "riscv64", None, "llama_cpp_install"),
        ("cuda", "aarch64", "12.8", "llama_cpp_release_toolkit"),
    ],
)
def test_release_without_official_asset_is_a_clear_error(backend, arch, toolkit, key):
    host = settings("gpu-box", llama_cpp_backend=backend, llama_cpp_release_toolkit=toolkit)
    with pytest.raises(InventoryError) as caught:
        assets.release_assets(host, arch)
    assert caught.value.where == "gpu-box" and caught.value.key == key
    assert backend in str(caught.value)


def test_release_cache_key_depends_on_downloaded_files():
    found = assets.release_assets(settings(), "x86_64")
    assert assets.release_cache_key(found, [SOURCE_SHA]) != assets.release_cache_key(found, [OTHER_SHA])
    assert len(assets.release_cache_key(found, [SOURCE_SHA])) == groups.CACHE_KEY_LENGTH
