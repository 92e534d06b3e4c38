"""Platform groups and cache keys: hosts that can share a build share one key, anything that changes it does not."""

from __future__ import annotations

import pytest
from llama_cpp_samples import OTHER_SHA, SOURCE_SHA, group_of, settings

from llamafleet.roles.llama_cpp import cmake, groups


def key_for(source=SOURCE_SHA, extra=(), distro="debian", version="12", arch="x86_64", backend="cpu", variants="all"):
    host = settings(llama_cpp_backend=backend, llama_cpp_cpu_variants=variants, llama_cpp_cmake_args=list(extra))
    args = cmake.cmake_args("b11434", source, backend, variants, extra)
    return groups.artifact_cache_key(source, args, group_of(host, distro, version, arch))


def test_cache_key_is_stable():
    assert key_for() == key_for()
    # Pinned: a silent change of the key derivation would rebuild every cluster's artifacts.
    assert key_for() == "680a9f5f2db1fc9e"


@pytest.mark.parametrize(
    "change",
    [
        {"source": OTHER_SHA},
        {"extra": ("-DGGML_CUDA_FA_ALL_QUANTS=ON",)},
        {"distro": "ubuntu", "version": "24.04"},
        {"version": "13"},
        {"arch": "aarch64"},
        {"backend": "vulkan"},
        {"variants": "native"},
    ],
)
def test_cache_key_changes_with_source_flags_and_platform(change):
    assert key_for(**change) != key_for()


def test_native_groups_split_by_cpu_features_but_portable_ones_do_not():
    native, portable = settings(llama_cpp_cpu_variants="native"), settings()
    avx512, avx2 = groups.cpu_signature(["avx2", "avx512f"]), groups.cpu_signature(["avx2"])
    assert groups.platform_group(native, "debian", "12", "x86_64", avx512) != groups.platform_group(
        native, "debian", "12", "x86_64", avx2
    )
    assert groups.platform_group(portable, "debian", "12", "x86_64", avx512) == groups.platform_group(
        portable, "debian", "12", "x86_64", avx2
    )
    assert groups.cpu_signature(["b", "a", "a"]) == groups.cpu_signature(["a", "b"])


def test_a_group_is_named_by_its_platform_and_a_release_by_version_backend_and_key():
    assert group_of(settings(llama_cpp_cpu_variants="native")).name == "debian-12-x86_64-cpu-native"
    assert groups.release_id("b11434", "cpu", "0123456789abcdef") == "b11434-cpu-0123456789ab"
    assert groups.release_dir("b11434-cpu-0123456789ab") == "/opt/llama.cpp/releases/b11434-cpu-0123456789ab"
