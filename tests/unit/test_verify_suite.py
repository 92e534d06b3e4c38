"""verify's pure parts: expected values from the inventory, parsers of recorded host output, the summary."""

from __future__ import annotations

import io
import json

import pytest
from inventory_tree import write_tree
from recordings import recorded_lines

from llamafleet import inventory
from llamafleet.ssh import HostConnection
from llamafleet.verify import probes, report
from llamafleet.verify.backend import EngineBackend
from llamafleet.verify.expected import Expectations, build_manifest, identity, normalise, size_bytes
from llamafleet.verify.test_services import PROCESS

# The lab the recordings in tests/fixtures/recorded/verify/ come from (see record.py there).
LAB = """\
all:
  vars:
    llama_cpp_version: b11434
    llama_cpp_cpu_variants: native
    llama_cpp_source_sha256: b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
    api_allow: [10.213.85.1]
  children:
    head:
      hosts:
        head: {ansible_host: 10.213.85.2}
    workers:
      hosts:
        w1: {ansible_host: 10.213.85.3, firewall: ufw}
        w2: {ansible_host: 10.213.85.4, firewall: nftables}
"""


def recorded(host: str, fact: str) -> list[str]:
    return recorded_lines(f"verify/{host}_{fact}.txt")


@pytest.fixture
def expect(tmp_path) -> Expectations:
    return Expectations(inventory.load(write_tree(tmp_path, {"hosts.yml": LAB})))


@pytest.mark.parametrize("host", ["head", "w1", "w2"])
def test_expected_release_is_the_one_provision_installed(expect, host):
    from llamafleet.facts import OsRelease, PathInfo

    os_info = OsRelease().process(recorded(host, "os"))
    link = PathInfo("/opt/llama.cpp/current", False).process(recorded(host, "current"))
    wanted = expect.release_id(expect.inventory.hosts[host], os_info, recorded(host, "cpu_flags"))
    assert link.target == f"releases/{wanted}" == "releases/b11434-cpu-374e3cb274cd"


def test_recorded_builds_are_identical_and_intact(expect):
    manifests = {h: build_manifest(recorded(h, "identity")) for h in ("head", "w1", "w2")}
    assert identity.identity_problems(manifests, expect.llama) == []
    swapped = dict(manifests["w1"]["measured"], **{"bin/ggml-rpc-server": "0" * 64})
    manifests["w1"] = {**manifests["w1"], "measured": swapped}
    problems = identity.identity_problems(manifests, expect.llama)
    assert problems == ["w1: bin/ggml-rpc-server sha256 0000.. differs from the build of group "
                        "debian-12-x86_64-cpu-native (934e..)"]  # fmt: skip


@pytest.mark.parametrize("host", ["head", "w1"])
def test_running_sandbox_matches_the_rendered_unit(expect, host):
    state = probes.Service("unit").process(recorded(host, "service"))
    wanted = expect.hardening(expect.inventory.hosts[host])
    assert len(wanted) >= 25
    assert {k: v for k, v in wanted.items() if normalise(k, state.get(k)) != v} == {}
    assert {k: state.process.get(k) for k in PROCESS} == PROCESS
    assert state.process["Uid"].split()[0] != "0"
    assert state.running_for is not None and state.running_for > 1


def test_a_stopped_service_has_no_process_and_no_listener():
    state = probes.Service("llama-rpc.service").process(recorded("w1", "service_stopped"))
    assert (state.get("ActiveState"), state.get("SubState"), state.running_for) == ("inactive", "dead", None)
    assert state.process == {}
    ports = {(s.address, s.port) for s in probes.Listening().process(recorded("w1", "listening_stopped"))}
    assert ("10.213.85.3", 50052) not in ports and ("0.0.0.0", 22) in ports


def test_sockets_parse_into_listening_and_established_endpoints():
    listening = probes.Listening().process(recorded("w1", "listening"))
    assert probes.Socket("10.213.85.3", 50052) in listening
    established = probes.Established().process(recorded("w1", "established"))
    assert probes.Socket("10.213.85.3", 50052, "10.213.85.2") in established
    assert probes.Listening().process(["LISTEN 0 4096 [::]:22 [::]:*"]) == (probes.Socket("::", 22),)


def test_reach_from_the_head_is_its_session_and_others_are_closed(expect):
    assert probes.Reachable(()).process(recorded("head", "reach")) == {
        "10.213.85.3:50052": "session",
        "10.213.85.4:50052": "session",
    }
    assert probes.Reachable(()).process(recorded("w1", "reach")) == {"10.213.85.4:50052": "closed"}
    assert expect.probed_by(expect.inventory.hosts["w1"]) == ("10.213.85.4:50052",)
    assert expect.probed_by(expect.inventory.hosts["head"]) == ("10.213.85.3:50052", "10.213.85.4:50052")


def test_outsiders_form_a_ring_and_a_single_worker_falls_to_the_controller(tmp_path):
    three = LAB + "        w3: {ansible_host: 10.213.85.5}\n"
    ring = Expectations(inventory.load(write_tree(tmp_path / "3", {"hosts.yml": three})))
    assert [ring.outsider_of(w) for w in ("w1", "w2", "w3")] == ["w2", "w3", "w1"]
    one = LAB.replace("        w2: {ansible_host: 10.213.85.4, firewall: nftables}\n", "")
    alone = Expectations(inventory.load(write_tree(tmp_path / "1", {"hosts.yml": one})))
    assert alone.outsider_of("w1") is None and alone.probed_by(alone.inventory.hosts["w1"]) == ()


def test_reach_commands_quote_endpoints_and_probe_at_once():
    fact = probes.Reachable(("10.0.0.2:50052", "10.0.0.3:50052"))
    assert fact.command().startswith("for e in 10.0.0.2:50052 10.0.0.3:50052; do sh -c ")
    assert fact.command().endswith(" & done; wait")
    assert probes.Reachable(()).command() == "true"


def test_cache_model_and_load_log_parse_from_recorded_output(expect):
    assert probes.RpcCache().process(recorded("w1", "cache")) == probes.CacheDir(True, 4096, 0)
    assert probes.RpcCache().process([]) == probes.CacheDir(False)
    model = probes.DeployedModel().process(recorded("head", "model"))
    assert model["name"] == "vdev-tiny.gguf" and model["measured"] == model["sha256"]
    assert probes.DeployedModel().process([]) is None
    held = probes.LoadLog().process(recorded("head", "load_log"))
    assert held == {"10.213.85.3:50052": 0.61, "10.213.85.4:50052": 0.33}


def test_head_api_answers_parse_into_status_bodies_and_waited_time(expect):
    api = probes.HeadApi("127.0.0.1", 8080, 1).process(recorded("head", "api"))
    assert api["waited"] == 0
    assert (api["health"].status, api["models_without_key"].status, api["models"].status) == (200, 401, 200)
    ids = [m["id"] for m in json.loads(api["models"].body)["data"]]
    assert expect.model_alias(expect.inventory.head, {"name": "vdev-tiny.gguf"}) in ids
    assert json.loads(api["completion"].body)["tokens_predicted"] == probes.COMPLETION_TOKENS
    assert api["metrics"].status == 200 and "llamacpp:prompt_tokens_total" in api["metrics"].body
    assert probes.KeyInArguments().process(recorded("head", "key_in_arguments")) == ()


def test_the_key_travels_on_stdin_never_in_a_command(expect):
    for fact in (probes.HeadApi("127.0.0.1", 8080, 5), probes.KeyInArguments()):
        assert f'"${probes.KEY_VARIABLE}"' in fact.command()
    key_file = expect.key_file(expect.inventory.head)
    key_file.write_text("lf-secret-key\n")
    assert expect.key(expect.inventory.head) == b"lf-secret-key\n"
    assert "lf-secret-key" not in probes.HeadApi("127.0.0.1", 8080, 5).command()


def test_sizes_and_addresses_are_normalised_before_comparing():
    assert [size_bytes(v) for v in (None, "1024", "4K", "20G")] == [None, 1024, 4096, 20 << 30]
    assert normalise("IPAddressAllow", "10.0.0.1 localhost") == {"10.0.0.1/32", "127.0.0.0/8", "::1/128"}
    assert normalise("IPAddressDeny", "any") == {"0.0.0.0/0", "::/0"}
    assert normalise("RestrictAddressFamilies", "AF_UNIX AF_INET") == {"AF_INET", "AF_UNIX"}


def test_testinfra_backend_quotes_its_arguments(expect):
    backend = EngineBackend(HostConnection(expect.inventory.hosts["w1"]))  # nothing connects before run()
    assert backend.get_command("test -e %s", "/a dir/;rm") == "test -e '/a dir/;rm'"
    assert backend.get_pytest_id() == "w1"  # test ids name the inventory host, as in test_x[w1]


def summary_doc() -> dict:
    failed = report.Outcome(
        "test_rpc_closed_to_others", "w2", "failed", "RPC port closed to everyone but the head",
        "w1 cannot connect to 10.0.0.3:50052", "w1 connected (open)", "invoke provision",
    )  # fmt: skip
    passed = report.Outcome("test_service_running", "w2", "passed")
    skipped = report.Outcome("test_rpc_cache_seeded", "w2", "skipped", message="w2: rpc_cache_seed is off")
    return {
        "exit_code": 1, "passed": 1, "failed": 1, "skipped": 1, "seconds": 2.04,
        "hosts": {"w2": [vars(failed), vars(passed), vars(skipped)]},
        "unreachable": {}, "ssh_commands": {"w2": 1}, "junit_xml": "out.xml", "html": None,
    }  # fmt: skip


def test_summary_names_host_check_expected_found_and_where_to_look():
    out = io.StringIO()
    report.print_summary(summary_doc(), out)
    assert out.getvalue().splitlines() == [
        "w2             1/3 passed, 1 skipped",
        "  FAILED test_rpc_closed_to_others[w2]: RPC port closed to everyone but the head",
        "      expected: w1 cannot connect to 10.0.0.3:50052",
        "      found:    w1 connected (open)",
        "      look:     invoke provision",
        "  skipped test_rpc_cache_seeded: w2: rpc_cache_seed is off",
        "",
        "verify FAILED: 1 passed, 1 failed, 1 skipped in 2.0 s (SSH commands per host: w2 1)",
        "junit xml: out.xml",
    ]


def test_unreachable_host_is_one_line():
    doc = summary_doc() | {"unreachable": {"w2": "w2: cannot connect to 10.0.0.3:22: timed out"}}
    out = io.StringIO()
    report.print_summary(doc, out)
    assert out.getvalue().splitlines()[0] == (
        "w2             1/3 passed, 1 skipped  UNREACHABLE: w2: cannot connect to 10.0.0.3:22: timed out"
    )
    assert "  FAILED" not in out.getvalue(), "an unreachable host's checks are not listed one by one"


def test_seeded_entries_come_from_the_controllers_record_of_the_model(expect, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    sha = "ab" * 32
    assert expect.seeded_entries(sha) is None and expect.seeded_entries(None) is None  # not deployed from here
    (tmp_path / "cache/tensors").mkdir(parents=True)
    # deploy's record: [part index, entry name, offset, size] per tensor over 10 MiB
    entries = [[0, f"{n:016x}", 4096 * n, 11 << 20] for n in range(3)]
    (tmp_path / f"cache/tensors/{sha}.json").write_text(json.dumps(entries))
    assert expect.seeded_entries(sha) == 3
    (tmp_path / f"cache/tensors/{sha}.json").write_text("{not json")
    assert expect.seeded_entries(sha) is None
