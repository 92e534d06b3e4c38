"""BUILD.json and the identity gate: every host runs the same llama.cpp, each file as its group's build made it."""

from __future__ import annotations

import pytest
from llama_cpp_samples import FILES, OTHER_SHA, SOURCE_SHA, cluster, manifest, settings
from recordings import REFERENCE_BUILD

from llamafleet.errors import OperationError
from llamafleet.roles.llama_cpp import identity


def test_manifest_holds_identity_and_sorted_checksums():
    document = manifest(settings())
    assert list(document)[:3] == ["schema", "version", "install"]
    assert document["version"] == "b11434" and document["source_sha256"] == SOURCE_SHA
    assert document["platform"]["name"] == "debian-12-x86_64-cpu-all"
    assert list(document["files"]) == sorted(FILES)
    assert document["links"] == {"bin/libggml.so.0": "libggml.so.0.9.7"}
    assert document["release_id"].startswith("b11434-cpu-")


def test_gate_passes_identical_builds():
    wanted, manifests = cluster(head={}, w1={}, w2={})
    assert identity.identity_problems(manifests, wanted, reference_host="head") == []


def test_gate_names_the_host_with_another_version():
    wanted, manifests = cluster(head={}, w1={}, w2={})
    manifests["w2"] = manifest(settings("w2"), source=OTHER_SHA, version="b11433")
    problems = identity.identity_problems(manifests, wanted, reference_host="head")
    assert "w2: llama.cpp b11433 (source 1a2b..) but head runs b11434 (source 9f8e..)" in problems
    assert all(problem.startswith("w2:") for problem in problems)


def test_gate_names_host_and_file_of_a_replaced_binary():
    wanted, manifests = cluster(head={}, w1={}, w2={})
    replaced = dict(FILES, **{"bin/llama-server": "0bad" + "9" * 60})
    manifests["w1"] = identity.with_measured_files(
        manifests["w1"], "".join(f"{sha}  {path}\n" for path, sha in replaced.items())
    )
    problems = identity.identity_problems(manifests, wanted, reference_host="head")
    assert problems == [
        "w1: bin/llama-server sha256 0bad.. differs from the build of group debian-12-x86_64-cpu-all (ab12..)"
    ]


def test_gate_checks_files_against_the_controllers_artifact():
    wanted, manifests = cluster(w1={}, w2={})
    artifact = dict(FILES, **{"bin/llama-bench": "7777" + "0" * 60})
    problems = identity.identity_problems(manifests, wanted, group_files={"debian-12-x86_64-cpu-all": artifact})
    assert "w1: bin/llama-bench is missing from the build of group debian-12-x86_64-cpu-all (7777..)" in problems
    assert len(problems) == 2


def test_gate_accepts_a_cuda_host_beside_cpu_hosts_from_the_same_source():
    wanted, manifests = cluster(head={"llama_cpp_backend": "cuda"}, w1={}, w2={})
    cuda_files = dict(FILES, **{"bin/libggml-cuda.so": "c0da" + "0" * 60})
    manifests["head"] = manifest(wanted["head"], files=cuda_files)
    assert identity.identity_problems(manifests, wanted, reference_host="head") == []


def test_gate_reports_a_host_without_install():
    wanted, manifests = cluster(head={}, w1={})
    manifests["w3"], wanted["w3"] = None, settings("w3")
    assert identity.identity_problems(manifests, wanted, reference_host="head") == ["w3: llama.cpp is not installed"]


def test_gate_reports_a_build_that_is_not_what_the_inventory_asks():
    wanted, manifests = cluster(head={}, w1={})
    wanted["w1"] = settings("w1", llama_cpp_backend="vulkan")
    problems = identity.identity_problems(manifests, wanted, reference_host="head")
    assert problems == ["w1: installed backend cpu but the inventory wants vulkan"]


def test_gate_without_head_uses_the_majority_as_reference():
    wanted, manifests = cluster(w1={}, w2={}, w3={})
    manifests["w1"] = manifest(settings("w1"), source=OTHER_SHA)
    problems = identity.identity_problems(manifests, wanted)
    assert problems[0] == "w1: llama.cpp b11434 (source 1a2b..) but w2 runs b11434 (source 9f8e..)"


def test_measured_files_parse_sha256sum_output():
    measured = identity.with_measured_files({}, f"{SOURCE_SHA}  ./bin/llama-server\n{OTHER_SHA} *bin/libllama.so.0\n")[
        "measured"
    ]
    assert measured == {"bin/llama-server": SOURCE_SHA, "bin/libllama.so.0": OTHER_SHA}


# -- what the reference build's binaries say about themselves --------------------------------------


def test_version_output_of_the_reference_build_parses():
    for name in ("llama-server", "llama-bench"):
        assert identity.parse_version_output((REFERENCE_BUILD / f"version-{name}.txt").read_text()) == (
            11434,
            "src-b0a2feb64c6f",
        )


def test_rpc_server_has_no_version_flag_but_a_protocol_banner():
    # Recorded: `ggml-rpc-server --version` prints "unknown argument" and the usage, exit status 0.
    with pytest.raises(OperationError):
        identity.parse_version_output((REFERENCE_BUILD / "version-ggml-rpc-server.txt").read_text())
    assert identity.parse_rpc_server_banner((REFERENCE_BUILD / "banner-ggml-rpc-server.txt").read_text()) == "7.0.0"
    with pytest.raises(OperationError):
        identity.parse_rpc_server_banner("")


def test_version_output_of_older_builds_parses():
    assert identity.parse_version_output("version: 4409 (a1b2c3d)\nbuilt with cc") == (4409, "a1b2c3d")
    with pytest.raises(OperationError):
        identity.parse_version_output("llama-server: error while loading shared libraries")
