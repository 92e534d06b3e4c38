"""How llama.cpp is configured and built: the cmake arguments of a build and the targets it makes."""

from __future__ import annotations

from collections.abc import Sequence

from .settings import build_number

SERVER_TARGET = "llama-server"
BENCH_TARGET = "llama-bench"
# Current trees call the worker ggml-rpc-server, older ones rpc-server; first match wins.
WORKER_TARGETS = ("ggml-rpc-server", "rpc-server")


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
