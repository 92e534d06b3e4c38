"""Benchmark: 2 clusters of a head and 2 workers behind a balancer; what clients of the endpoint see while the
clusters change, and what the balancer costs.

On a lab of its own (`benchroll`, or --name), in one run, it prints:
- throughput of the heads asked directly (the clusters provisioned without the balancer first, so the heads admit
  this machine), both at once, against `invoke bench` through the balancer's endpoint with as many clients;
- a no-op provision + deploy (one CLI process) against the parallel `ssh true` floor of the same hosts;
- failed requests of two clients (back to back, and streaming) during a rolling deploy of a new model, during a
  rolling llama.cpp switch, and during lab.reboot of one head, and how long each took.
Only one llama.cpp version (b11434) is in the test cache: the switch goes from the lab's build to a release made
from that same build (`llama_cpp_install: release`, served from this machine), a new release on every host, rolled
cluster by cluster like an upgrade. Prints figures; asserts nothing. Needs the llama.cpp artifact cached
(LLAMAFLEET_CACHE, e.g. the lab tier's), or builds it once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import haproxy, inventory, lab  # noqa: E402
from llamafleet.lab.inventory import ssh_argv  # noqa: E402
from scripts import make_gguf  # noqa: E402
from scripts.bench_noop import ssh_floor  # noqa: E402
from scripts.endpoint_clients import Clients, failed, served_by, summary  # noqa: E402
from tests.lab.labtools import release_tarball, served_folder  # noqa: E402

VERSION = "b11434"
CLIENT_SECONDS = 600  # the client loops stop by themselves after this


def invoke(*argv: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600)  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"invoke {' '.join(argv[:1])} failed (exit {done.returncode}): {done.stdout[-2500:]} "
                         f"{done.stderr[-1500:]}")  # fmt: skip
    return elapsed, done


def without_balancers(inv_path: str) -> str:
    """The lab's inventory without group balancers, beside it (the same key file): the heads then admit this
    machine. Removed by leftovers()."""
    data = yaml.safe_load(Path(inv_path).read_text())
    del data["all"]["children"]["balancers"]
    data["all"]["vars"]["api_key_file"] = str(Path(inv_path).with_suffix(".api-key"))
    path = Path(inv_path).with_suffix(".direct.yml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def bench_tokens(inv: str, at: str, clients: int, env: dict[str, str], out: Path) -> float:
    """Generated tokens/s of `invoke bench` at host `at` with `clients` concurrent clients."""
    invoke("bench", "-i", inv, "--at", at, "-c", str(clients), "-r", "6", "-g", "64", "-p", "64", "-o", str(out),
           env=env)  # fmt: skip
    (level,) = json.loads(out.read_text())["levels"]
    return float(level["gen_tokens_per_s"])


def servers(info) -> dict[str, haproxy.Server]:
    shown = subprocess.run(ssh_argv(info, info.host("lb1")) + [haproxy.show_servers()], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    return haproxy.parse_servers(shown.stdout.splitlines())


def serving(info, head: str) -> bool:
    argv = ssh_argv(info, info.host(head)) + ["systemctl is-active llama-server"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip() == "active"


def under_load(url: str, key: str, action) -> tuple[list, float, float]:
    """(outcomes, when the action returned, its seconds) of `action()` run while the clients ask."""
    with Clients(url, key, CLIENT_SECONDS) as clients:
        time.sleep(2)
        started = time.monotonic()
        action()
        returned = time.monotonic()
        time.sleep(3)
    return clients.stop(), returned, returned - started


def measure(name: str, env: dict[str, str]) -> None:
    source = subprocess.run([sys.executable, str(ROOT / "scripts/fetch_llama_source.py"), VERSION],
                            capture_output=True, text=True, check=True).stdout.split()[0]  # fmt: skip
    pins = ["-e", f"llama_cpp_version={VERSION}", "-e", f"llama_cpp_source_archive={source}"]
    folder = Path(tempfile.mkdtemp(prefix="bench-rolling-"))
    models = {label: folder / f"bench-{label}.gguf" for label in ("a", "b")}
    for seed, path in enumerate(models.values(), 1):
        make_gguf.make_model(path, size="1M", seed=seed)
    info = lab.up(name=name, clusters=2, workers=2, balancers=1)
    inv = info.inventory
    direct = without_balancers(inv)
    invoke("provision", "-i", direct, *pins, env=env)
    invoke("deploy", "-i", direct, *pins, "--model", str(models["a"]), env=env)
    direct_tokens = {k: 0.0 for k in (1, 2)}
    for per_head in direct_tokens:
        with ThreadPoolExecutor(2) as pool:
            heads = list(pool.map(lambda h, k=per_head: bench_tokens(direct, h, k, env, folder / f"{h}-{k}.json"),
                                  ["c1-head", "c2-head"]))  # fmt: skip
        direct_tokens[per_head] = sum(heads)

    invoke("provision", "-i", inv, *pins, env=env)
    invoke("deploy", "-i", inv, *pins, "--model", str(models["a"]), env=env)
    url = f"http://{info.host('lb1').address}:8080"
    key = Path(inv).with_suffix(".api-key").read_text().split()[0]
    print(f"lab {name}: 2 clusters x (1 head + 2 workers) + 1 balancer, {len(info.hosts)} hosts, model 1 MB")
    print("throughput, generated tokens/s (invoke bench, 64+64 tokens, 6 requests per client):")
    for per_head, heads in direct_tokens.items():
        through = bench_tokens(inv, "lb1", 2 * per_head, env, folder / f"lb1-{per_head}.json")
        print(f"  {per_head} client(s) per head: heads directly {heads:8.1f}, through the balancer "
              f"({2 * per_head} clients) {through:8.1f}: {through / heads:.2f}x")  # fmt: skip

    floors, noops = [], []
    for _ in range(3):
        floors.append(ssh_floor(inventory.load(inv)))
        elapsed, done = invoke("provision", "-i", inv, *pins, "deploy", "-i", inv, *pins, "--model",
                               str(models["a"]), env=env)  # fmt: skip
        if "changed=0" not in done.stdout or any(f"changed={n}" in done.stdout for n in range(1, 10)):
            print(f"  (the no-op provision + deploy changed something: {done.stdout[-800:]})")
        noops.append(elapsed)
    floor, noop = statistics.median(floors), statistics.median(noops)
    print(f"no-op provision + deploy, one process: {noop:.2f} s; ssh true to all {len(info.hosts)} hosts in "
          f"parallel: {floor:.2f} s; {noop / floor:.1f}x the floor (medians of 3)")  # fmt: skip

    def report(what: str, outcomes: list, returned: float, seconds: float, model: str | None = None) -> None:
        extra = f"; answered after it: {sorted(m or '?' for m in served_by(outcomes, returned))}" if model else ""
        print(f"{what}: took {seconds:.1f} s; {summary(outcomes)}{extra}")
        for outcome in failed(outcomes)[:3]:
            print(f"    failed: {outcome}")

    deploy_b = lambda: invoke("deploy", "-i", inv, *pins, "--model", str(models["b"]), env=env)  # noqa: E731
    report("rolling deploy of a new model", *under_load(url, key, deploy_b), model=models["b"].name)

    serve = folder / "release"
    serve.mkdir()
    with served_folder(release_tarball(env, serve)) as release_url:
        release = ["-e", "llama_cpp_install=release", "-e", f"llama_cpp_release_url={release_url}"]
        switch = lambda: invoke("provision", "-i", inv, *pins, *release, env=env)  # noqa: E731
        report("rolling llama.cpp switch (build -> release)", *under_load(url, key, switch))

    def reboot() -> None:
        lab.reboot(name, "c1-head")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (serving(info, "c1-head") and servers(info)["c1"].in_rotation):
            time.sleep(1)

    report("lab.reboot of c1-head (until back in rotation)", *under_load(url, key, reboot))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="benchroll", help="lab name (removed at the end)")
    args = parser.parse_args()
    env = {**os.environ, "LLAMAFLEET_CACHE": os.environ.get("LLAMAFLEET_CACHE", str(Path.home() / ".cache/llamafleet"))}
    try:
        measure(args.name, env)
    finally:
        lab.down(args.name)
        for left in (ROOT / "inventory").glob(f"{args.name}.*"):  # the direct inventory, the bench histories
            left.unlink()


if __name__ == "__main__":
    main()
