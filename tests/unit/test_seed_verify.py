"""verify's checks of seeding and of the RPC protocol, from a real lab's recorded output: every seeded entry a file
of exactly its tensor's size, and each worker's running rpc-server announcing the protocol the head's build speaks."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest
from inventory_tree import write_tree
from recordings import RECORDED, recorded_lines

from llamafleet import inventory, paths
from llamafleet.verify import probes, test_workers
from llamafleet.verify.expected import Expectations, seeded_sizes, service_user
from llamafleet.verify.gather import Gathered, Observed
from llamafleet.verify.plugin import CheckFailed
from llamafleet.verify.suite import Suite

# The lab of the recordings (tests/fixtures/recorded/verify/): race.gguf (make_gguf --seed 21, n_embd 1792, one
# layer) deployed with seeding; its 7 tensors over 10 MiB, as deploy recorded them, are seeded_tensors.json.
RACE_SHA = "7cde2da4374692205f4e9b8cd357e5a35f62de64a4d70eee8bc8b03004186204"
LAB = """\
all:
  vars:
    llama_cpp_version: b11434
    llama_cpp_source_sha256: b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
    rpc_cache_seed: true
  children:
    head:
      hosts:
        head: {ansible_host: 10.213.51.2}
    workers:
      hosts:
        w1: {ansible_host: 10.213.51.3}
        w2: {ansible_host: 10.213.51.4}
"""


def recorded(name: str) -> list[str]:
    return recorded_lines(f"verify/{name}")


@pytest.fixture
def tensors_record(controller_cache):
    """deploy's record of the model's entries in this test's controller cache."""
    (controller_cache / "tensors").mkdir(parents=True)
    shutil.copy(RECORDED / "verify/seeded_tensors.json", controller_cache / f"tensors/{RACE_SHA}.json")


def suite_of(tmp_path, head: dict, w1: dict) -> Suite:
    """A verify run whose facts were already read: the head's and w1's as given."""
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": LAB}))
    suite = Suite(inv, list(inv.hosts.values()), Expectations(inv))
    seen = {"head": Observed(inv.hosts["head"], head), "w1": Observed(inv.hosts["w1"], w1)}
    suite._gathered = Gathered(seen, {}, 0.0)
    return suite


def worker_facts(listing: list[str], announced: list[str], service: str = "w1_service.txt") -> dict:
    """A worker's facts: its cache as the recorded listing shows it (RpcCache's size and count agree with it), its
    service as recorded running (or stopped)."""
    entries = probes.RpcCacheEntries().process(listing)
    files = [size for kind, size in entries.values() if kind == "f"]
    return {
        "service": probes.Service(paths.RPC_UNIT).process(recorded(service)),
        "cache": probes.CacheDir(True, sum(files), len(files)),
        "cache_entries": entries,
        "rpc_announced": probes.RpcAnnounced(paths.RPC_UNIT).process(announced),
    }


def head_facts(banner: list[str]) -> dict:
    return {
        "model": {"name": "race.gguf", "sha256": RACE_SHA},
        "rpc_of_build": probes.RpcOfBuild("llama").process(banner),
    }


def check(test, suite: Suite, host: str = "w1") -> CheckFailed | None:
    """Run one of verify's checks on `host`; the CheckFailed it raised, or None when it passed."""
    try:
        test(suite.inventory.hosts[host], suite.observed(host), suite.expect, suite)
    except CheckFailed as failed:
        return failed
    return None


def test_a_recorded_cache_lists_entries_with_their_type_and_size():
    seeded = json.loads((RECORDED / "verify/seeded_tensors.json").read_text())
    listed = probes.RpcCacheEntries().process(recorded("w1_cache_entries.txt"))
    assert listed == {name: ("f", size) for _, name, _, size in seeded}
    damaged = probes.RpcCacheEntries().process(recorded("w1_cache_entries_damaged.txt"))
    assert (damaged["0123456789abcdef"], damaged["fedcba9876543210"]) == (("l", 11), ("d", 4096))
    assert damaged["20676d941e893dad"] == ("f", 1000) and "2b77659870466d76" not in damaged


def test_seeded_sizes_are_the_controllers_record_of_the_deployed_model(tensors_record):
    sizes = seeded_sizes(RACE_SHA)
    assert len(sizes) == 7 and set(sizes.values()) == {12845056}
    assert seeded_sizes("ab" * 32) is None and seeded_sizes(None) is None


def test_a_cache_seeded_in_full_passes(tmp_path, tensors_record):
    suite = suite_of(
        tmp_path, head_facts(recorded("head_rpc_of_build.txt")), worker_facts(recorded("w1_cache_entries.txt"), [])
    )
    assert check(test_workers.test_rpc_cache_seeded, suite) is None


def test_one_entry_cut_short_fails_though_the_count_is_right(tmp_path, tensors_record):
    listing = [line.replace(" 12845056", " 12800000") if line.startswith("2c48a66c") else line for line in
               recorded("w1_cache_entries.txt")]  # fmt: skip
    failed = check(test_workers.test_rpc_cache_seeded, suite_of(tmp_path, head_facts([]), worker_facts(listing, [])))
    assert failed is not None and failed.found == "1 of 7 not so: 2c48a66c8294d9d3 12800000 bytes (12845056 expected)"


def test_a_cut_a_linked_and_a_missing_entry_each_fail_by_name(tmp_path, tensors_record):
    facts = worker_facts(recorded("w1_cache_entries_damaged.txt"), [])
    failed = check(test_workers.test_rpc_cache_seeded, suite_of(tmp_path, head_facts([]), facts))
    assert failed is not None and failed.found.startswith("3 of 7 not so: "), failed
    assert set(failed.found.removeprefix("3 of 7 not so: ").split(", ")) == {
        "20676d941e893dad 1000 bytes (12845056 expected)",
        "a845f343994c52d6 a symlink (12845056 expected)",
        "2b77659870466d76 missing (12845056 expected)",
    }
    assert "exactly its tensor's size" in failed.expected


def test_the_banners_of_the_running_server_and_of_the_heads_build_are_read(tmp_path):
    assert probes.RpcAnnounced(paths.RPC_UNIT).process(recorded("w1_rpc_announced.txt")) == "7.0.0"
    assert probes.RpcOfBuild("llama").process(recorded("head_rpc_of_build.txt")) == "7.0.0"
    assert probes.RpcAnnounced(paths.RPC_UNIT).process([]) is None
    banner = recorded("w1_rpc_announced.txt")
    suite = suite_of(
        tmp_path, head_facts(recorded("head_rpc_of_build.txt")), worker_facts(recorded("w1_cache_entries.txt"), banner)
    )
    assert check(test_workers.test_rpc_protocol_as_head, suite) is None


@pytest.mark.parametrize(
    ("head_banner", "worker_banner", "service", "found"),
    [
        (
            ["Starting RPC server v7.0.1"],
            "w1_rpc_announced.txt",
            "w1_service.txt",
            "v7.0.0 announced by the running rpc-server",
        ),
        ("head_rpc_of_build.txt", [], "w1_service.txt", "no `Starting RPC server` line"),
        ("head_rpc_of_build.txt", [], "w1_service_stopped.txt", "no rpc-server running"),
        ([], "w1_rpc_announced.txt", "w1_service.txt", "v7.0.0 announced by the running rpc-server"),
    ],
    ids=["patch-differs", "worker-silent", "worker-stopped", "head-silent"],
)
def test_a_worker_not_on_the_heads_protocol_fails(tmp_path, head_banner, worker_banner, service, found):
    head = recorded(head_banner) if isinstance(head_banner, str) else head_banner
    worker = recorded(worker_banner) if isinstance(worker_banner, str) else worker_banner
    suite = suite_of(tmp_path, head_facts(head), worker_facts(recorded("w1_cache_entries.txt"), worker, service))
    failed = check(test_workers.test_rpc_protocol_as_head, suite)
    assert failed is not None and failed.found == found and failed.check == "RPC protocol as the head's"


def test_a_stopped_worker_announces_nothing_though_its_last_banner_is_in_the_journal():
    command = probes.RpcAnnounced(paths.RPC_UNIT).command()
    assert command.index("MainPID") < command.index('[ "${pid:-0}" -gt 0 ]') < command.index("journalctl")


def test_the_heads_build_is_asked_as_the_service_user_and_binds_nothing(tmp_path):
    inv = inventory.load(
        write_tree(
            tmp_path, {"hosts.yml": LAB.replace("    rpc_cache_seed", "    llamafleet_user: lfs\n    rpc_cache_seed")}
        )
    )
    user = service_user(Expectations(inv), inv.hosts["head"])
    words = shlex.split(probes.RpcOfBuild(user).command())
    assert words[:2] == ["cd", paths.BIN_DIR] and user == "lfs"
    at = words.index("setpriv")
    assert words[at : at + 5] == ["setpriv", "--reuid=lfs", "--regid=lfs", "--clear-groups", "--no-new-privs"]
    # An endpoint rpc-server cannot split into host and port: it prints its banner and returns before binding.
    assert words[words.index("-H") + 1].count(":") == 1 and words[words.index("-d") + 1] == "CPU"
