"""The seeding race on real workers: for a whole seeding deploy the service user swaps the writer's temporary files
for symlinks to root's canary files under /etc and /root and plants symlinks in its cache; no file outside the cache
changes owner, mode or content, and the deploy succeeds or stops with a clear line. Then verify checks every seeded
entry's size and each worker's RPC protocol against the head's build (real lab hosts, the session's lab)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import fnv_c
import pytest

from llamafleet import paths
from llamafleet.roles.model import layout, seed
from scripts import make_gguf
from tests import cache_swapper
from tests.lab.labtools import invoke_json, source_vars, ssh

WORKERS = ("w1", "w2")
CACHE = paths.RPC_CACHE_DIR
# Seven tensors of 12.25 MiB each (every attention and feed-forward matrix of one layer): all cached by rpc-server.
DIMS = {"n_embd": 1792, "n_layer": 1, "n_ff": 1792, "n_head": 14, "n_vocab": 512}
# Root's files the swapper's symlinks point at, each of an entry's size (so that a writer following a link passes
# its size check and goes on to chown and chmod); and files it does not aim at, which must not change either.
CANARIES = {"/etc/lf-canary-passwd": "0644 root:root", "/etc/lf-canary-shadow": "0640 root:shadow",
            "/root/lf-canary-key": "0600 root:root"}  # fmt: skip
WATCHED = ("/etc/passwd", "/etc/shadow", "/etc/ssh/ssh_host_ed25519_key", "/root/.ssh/authorized_keys")
SWAPPER_OUT = "/root/lf-swapper.out"


@pytest.fixture(scope="module")
def cluster_vars(source) -> list[str]:
    return [*source_vars(source), "-e", "rpc_cache_seed=true"]


@pytest.fixture(scope="module")
def race_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("race") / "race-test.gguf"
    make_gguf.make_model(path, seed=21, **DIMS)
    return path


def entries_of(model: Path) -> dict[str, int]:
    """Entry name -> size of each tensor rpc-server caches (FNV-1a-64 of its bytes), computed here independently."""
    found = {}
    with model.open("rb") as handle:
        for tensor in (t for t in layout.tensors(model) if t.size > seed.THRESHOLD):
            handle.seek(tensor.offset)
            found[f"{fnv_c.fnv1a_64(handle.read(tensor.size)):016x}"] = tensor.size
    return found


@pytest.fixture(scope="module")
def provisioned(lab, env, cluster_vars):
    code, doc = invoke_json("provision", lab.inventory, env, *cluster_vars)
    assert code == 0, [r for r in doc["results"] if r["status"] in ("failed", "unreachable")] or doc["messages"]


def states(lab, host: str) -> dict[str, cache_swapper.Canary]:
    done = ssh(lab, host, f"sh -c {shlex.quote(cache_swapper.STATES)} states {' '.join([*CANARIES, *WATCHED])}")
    assert done.returncode == 0, done.stderr
    return cache_swapper.parse_states(done.stdout)


@pytest.fixture
def canaries(lab, race_model):
    """Root's canary files on every worker, each as large as an entry; removed afterwards."""
    size = next(iter(entries_of(race_model).values()))
    made = "; ".join(
        f"head -c {size} /dev/urandom > {path} && chown {owner} {path} && chmod {mode} {path}"
        for path, (mode, owner) in ((p, v.split()) for p, v in CANARIES.items())
    )
    for host in WORKERS:
        assert ssh(lab, host, f"set -e; {made}").returncode == 0
    yield {host: states(lab, host) for host in WORKERS}
    for host in WORKERS:
        ssh(lab, host, f"rm -f {' '.join(CANARIES)}")


def start_swapper(lab, host: str, entries: dict[str, int]) -> int:
    """The swapper running as the service user in its cache (for at most 10 minutes); its pid on the worker."""
    targets = list(CANARIES)
    pairs = [f"{name}={targets[i % len(targets)]}" for i, name in enumerate(entries)]
    perl = shlex.join(["perl", "-e", cache_swapper.SWAPPER, CACHE, "600", *pairs, *targets])
    line = (
        f"setpriv --reuid=llama --regid=llama --clear-groups --no-new-privs {perl} > {SWAPPER_OUT} 2>&1 < /dev/null &"
        " echo $!"
    )
    started = ssh(lab, host, line)
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 30
    while "planted" not in ssh(lab, host, f"cat {SWAPPER_OUT}").stdout:
        assert time.monotonic() < deadline, f"the swapper on {host} did not start"
        time.sleep(0.2)
    return int(started.stdout.split()[-1])


def stop_swapper(lab, host: str, pid: int) -> int:
    """Ends the swapper by its pid and returns how many temporary files it swapped."""
    ssh(lab, host, f"kill {pid}; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; done")
    printed = ssh(lab, host, f"cat {SWAPPER_OUT}; rm -f {SWAPPER_OUT}").stdout
    return cache_swapper.swaps(printed)


def settle(lab) -> None:
    """The swappers' links removed from the caches (as the service user), the services restarted: while the links
    are there, the workers' rpc-servers may crash on them whenever the head, itself restarting, loads the model."""
    owner = "setpriv --reuid=llama --regid=llama --clear-groups --no-new-privs"
    links = f"cd / && {owner} find {CACHE} -maxdepth 1 -type l -delete"
    for host in WORKERS:
        assert ssh(lab, host, f"{links} && systemctl restart llama-rpc").returncode == 0
    assert ssh(lab, "head", "systemctl restart llama-server").returncode == 0


@pytest.fixture(scope="module", autouse=True)
def lab_left_settled(lab):
    """The next module gets workers restarted by hand: a cut entry repaired in the last test made w1's rpc-server
    crash once when the head reloaded the model, and its automatic restart would count against the next tests."""
    yield
    for host in WORKERS:
        ssh(lab, host, "systemctl restart llama-rpc")
    ssh(lab, "head", "systemctl restart llama-server")


def test_the_service_user_racing_a_seeding_deploy_changes_nothing_outside_its_cache(
    provisioned, lab, env, race_model, cluster_vars, canaries
):
    entries = entries_of(race_model)
    pids = {}
    try:
        for host in WORKERS:
            pids[host] = start_swapper(lab, host, entries)
        code, doc = invoke_json("deploy", lab.inventory, env, "--model", str(race_model), *cluster_vars)
    finally:
        swapped = {host: stop_swapper(lab, host, pid) for host, pid in pids.items()}
        settle(lab)
    assert {host: states(lab, host) for host in WORKERS} == canaries, "root wrote, chowned or chmodded through a link"
    assert all(count > 0 for count in swapped.values()), f"the swappers raced the writers: {swapped}"
    # Whenever the swapper swapped one of its files, the writer noticed (before or after its rename) and stopped.
    failed = [r for r in doc["results"] if r["status"] in ("failed", "unreachable")]
    seeding = [r for r in failed if r["operation"].startswith("rpc cache seeded with")]
    assert code == 1 and sorted(r["host"] for r in seeding) == list(WORKERS), (code, failed, doc["messages"])
    for result in seeding:
        assert "rpc cache: entry " in result["error"]["output"], result["error"]
    # What the swapper planted under the entries' names is its own rpc-server's to read: it may crash on it, and the
    # head, which loads the model across the workers, with it. Nothing else fails.
    others = [(r["host"], r["operation"]) for r in failed if r not in seeding]
    assert all(host == "head" and what.startswith("llama-server ready") for host, what in others), others


def cache_listing(lab, host: str) -> dict[str, tuple[int, str]]:
    """Regular files in the worker's cache: name -> (size, owner)."""
    done = ssh(lab, host, f"find {CACHE} -maxdepth 1 -type f -printf '%f %s %u\\n'")
    return {name: (int(size), owner) for name, size, owner in (line.split() for line in done.stdout.splitlines())}


def verify_checks(lab, env, cluster_vars) -> dict[str, tuple[str, str]]:
    """Seeding's and the protocol's checks of an `invoke verify`: test id -> (status, found)."""
    _, doc = invoke_json("verify", lab.inventory, env, *cluster_vars)
    return {
        f"{c['test']}[{host}]": (c["status"], c.get("found") or "")
        for host, checks in doc["hosts"].items()
        for c in checks
        if c["test"] in ("test_rpc_cache_seeded", "test_rpc_protocol_as_head")
    }


def test_after_the_race_seeding_completes_and_verify_checks_sizes_and_protocol(
    provisioned, lab, env, race_model, cluster_vars
):
    entries = entries_of(race_model)
    code, doc = invoke_json("deploy", lab.inventory, env, "--model", str(race_model), *cluster_vars)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    for host in WORKERS:
        listing = cache_listing(lab, host)
        assert {name: listing.get(name) for name in entries} == {n: (s, "llama") for n, s in entries.items()}
    ids = {f"{t}[{w}]" for t in ("test_rpc_cache_seeded", "test_rpc_protocol_as_head") for w in WORKERS}
    assert verify_checks(lab, env, cluster_vars) == {i: ("passed", "") for i in ids}

    cut = sorted(entries)[0]  # a cut entry would load silently as wrong weights
    assert ssh(lab, "w1", f"truncate -s 1000 {CACHE}/{cut}").returncode == 0
    fake = "#!/bin/sh\necho 'Starting RPC server v7.0.1'\n"  # the head's build, one patch level on
    rpc_server = f"$(readlink -f {paths.CURRENT_LINK})/bin/ggml-rpc-server"
    assert ssh(lab, "head", f"printf %s {shlex.quote(fake)} > {rpc_server}").returncode == 0
    seen = verify_checks(lab, env, cluster_vars)
    assert seen["test_rpc_cache_seeded[w1]"] == ("failed", f"1 of 7 not so: {cut} 1000 bytes ({entries[cut]} expected)")
    assert seen["test_rpc_cache_seeded[w2]"][0] == "passed"
    assert {seen[f"test_rpc_protocol_as_head[{w}]"] for w in WORKERS} == {
        ("failed", "v7.0.0 announced by the running rpc-server")
    }

    for task, extra in (("provision", ()), ("deploy", ("--model", str(race_model)))):
        code, doc = invoke_json(task, lab.inventory, env, *extra, *cluster_vars)
        assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    assert verify_checks(lab, env, cluster_vars) == {i: ("passed", "") for i in ids}
