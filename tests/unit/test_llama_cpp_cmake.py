"""The cmake arguments of a build: an RPC build with a truthful version, the backend's flags, the user's last."""

from __future__ import annotations

import json

import pytest
import yaml
from llama_cpp_samples import SOURCE_SHA
from recordings import REFERENCE_BUILD

from llamafleet.roles.llama_cpp import cmake
from llamafleet.roles.llama_cpp.settings import SHA256_PATTERN


def args_for(backend="cpu", variants="all", extra=(), gpu=()):
    return cmake.cmake_args("b11434", SOURCE_SHA, backend, variants, extra, gpu)


def test_common_args_make_an_rpc_build_with_a_truthful_version():
    args = args_for()
    for flag in (
        "-DGGML_RPC=ON",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_NUMBER=11434",
    ):
        assert flag in args
    assert "-DLLAMA_BUILD_COMMIT=src-9f8e00000000" in args
    assert "-DCMAKE_INSTALL_RPATH=$ORIGIN" in args and "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON" in args
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in args


def test_cpu_all_variants_is_portable_and_native_is_not():
    portable, native = args_for(variants="all"), args_for(variants="native")
    assert {"-DGGML_BACKEND_DL=ON", "-DGGML_NATIVE=OFF", "-DGGML_CPU_ALL_VARIANTS=ON"} <= set(portable)
    assert "-DGGML_NATIVE=ON" not in portable
    assert "-DGGML_NATIVE=ON" in native
    assert not {"-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_NATIVE=OFF"} & set(native)


@pytest.mark.parametrize(
    ("backend", "gpu", "present", "absent"),
    [
        ("cpu", (), set(), {"-DGGML_CUDA=ON", "-DGGML_VULKAN=ON", "-DGGML_HIP=ON"}),
        ("cuda", (), {"-DGGML_CUDA=ON"}, {"-DGGML_VULKAN=ON", "-DGGML_HIP=ON"}),
        ("cuda", ("86", "89"), {"-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=86;89"}, set()),
        ("vulkan", (), {"-DGGML_VULKAN=ON"}, {"-DGGML_CUDA=ON"}),
        ("rocm", (), {"-DGGML_HIP=ON"}, {"-DGPU_TARGETS="}),
        ("rocm", ("gfx1100", "gfx1030"), {"-DGGML_HIP=ON", "-DGPU_TARGETS=gfx1100;gfx1030"}, set()),
    ],
)
def test_each_backend_turns_on_its_own_flag_and_gpu_targets(backend, gpu, present, absent):
    args = set(args_for(backend=backend, gpu=gpu))
    assert present <= args
    assert not [arg for arg in args if absent and arg.startswith(tuple(absent))]


def test_user_args_come_last_so_they_override():
    args = args_for(extra=("-DLLAMA_USE_PREBUILT_UI=ON", "-DGGML_CUDA_FA_ALL_QUANTS=ON"))
    assert args[-2:] == ["-DLLAMA_USE_PREBUILT_UI=ON", "-DGGML_CUDA_FA_ALL_QUANTS=ON"]


def test_targets_are_server_and_bench_with_both_worker_names():
    assert cmake.build_targets() == ["llama-server", "llama-bench"]
    assert cmake.WORKER_TARGETS == ("ggml-rpc-server", "rpc-server")


def test_the_reference_build_was_configured_with_these_arguments():
    # BUILD.json written by the real build.sh on a real llama.cpp tree: the same arguments as computed here.
    reference = json.loads((REFERENCE_BUILD / "BUILD.json").read_text())
    source = reference["source_sha256"]
    assert reference["cmake_args"] == cmake.cmake_args("b11434", source, "cpu", "native")
    assert reference["platform"]["name"] == "debian-12-x86_64-cpu-native"
    assert {"bin/llama-server", "bin/ggml-rpc-server", "bin/llama-bench"} <= set(reference["files"])
    assert all(SHA256_PATTERN.fullmatch(digest) for digest in reference["files"].values())
    facts = yaml.safe_load((REFERENCE_BUILD / "build-facts.yml").read_text())
    assert facts["source_sha256"] == source
