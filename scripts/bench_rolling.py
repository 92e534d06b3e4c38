"""Benchmark: 2 clusters of a head and 2 workers behind a balancer; what clients of the endpoint see while the
clusters change, and what the balancer costs.

On a lab of its own (`benchroll`, or --name), in one run, it prints:
- throughput of the heads asked directly, both at once, against the balancer asked by as many clients (invoke
  bench's client; the heads admit only the balancers and loopback, so both are reached over SSH tunnels to the
  hosts' loopback, and the endpoint once more as clients reach it);
- a no-op provision + deploy (one CLI process) against the parallel `ssh true` floor of the same hosts;
- failed requests of two clients (back to back, and streaming) during a rolling deploy of a new model, during a
  rolling llama.cpp switch, and during lab.reboot of one head, and how long each took.
Only one llama.cpp version (b11434) is in the test cache: the switch goes from the lab's build to a release made
from that same build (`llama_cpp_install: release`, served from this machine), a new release on every host, rolled
cluster by cluster like an upgrade. Prints figures; asserts nothing. Needs the llama.cpp artifact cached
(LLAMAFLEET_CACHE, e.g. the lab tier's), or builds it once.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import bench, haproxy, inventory, lab  # noqa: E402
from llamafleet.lab.inventory import ssh_argv  # noqa: E402
from scripts import make_gguf  # noqa: E402
from scripts.bench_noop import ssh_floor  # noqa: E402
from scripts.benchlab import invoke, on_own_lab  # noqa: E402
from scripts.endpoint_clients import Clients, failed, served_by, summary  # noqa: E402
from tests.lab.labtools import release_tarball, served_folder  # noqa: E402

VERSION = "b11434"
CLIENT_SECONDS = 600  # the client loops stop by themselves after this


@contextlib.contextmanager
def tunnel(info, host: str, port: int = 8080) -> Iterator[str]:
    """http://127.0.0.1:N forwarded over SSH to `host`'s own loopback port (a head's API admits only the
    balancers and loopback); the ssh process ended afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
    *argv, destination = ssh_argv(info, info.host(host))
    forward = ["-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", destination]
    process = subprocess.Popen([*argv, *forward])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", local), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"no SSH tunnel to {host}:{port}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{local}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def tokens_per_s(url: str, key: str, clients: int, rounds: int = 8) -> float:
    """Generated tokens/s of `clients` clients at once, `rounds` requests each (64 + 64 tokens), as `invoke bench`
    measures them (its Api and run_level), after one warm-up request."""
    api = bench.Api(url, key)
    prompt = api.prompt(64)
    bench.run_level(api, prompt, 64, 1, 1)
    return bench.run_level(api, prompt, 64, clients, rounds).gen_tokens_per_s


def throughput(info, key: str, per_head: int, repeats: int = 3) -> tuple[float, float, float]:
    """Medians over `repeats` interleaved runs of: both heads asked directly at once (summed), the balancer with
    as many clients, both over SSH tunnels to the hosts' loopback (the same path but for the balancer), and the
    balancer's endpoint asked as clients ask it (no tunnel)."""
    direct, tunneled, endpoint = [], [], []
    url = f"http://{info.host('lb1').address}:8080"
    with tunnel(info, "c1-head") as c1, tunnel(info, "c2-head") as c2, tunnel(info, "lb1") as lb:
        for _ in range(repeats):
            with ThreadPoolExecutor(2) as pool:
                direct.append(sum(pool.map(lambda head: tokens_per_s(head, key, per_head), [c1, c2])))
            tunneled.append(tokens_per_s(lb, key, 2 * per_head))
            endpoint.append(tokens_per_s(url, key, 2 * per_head))
    return statistics.median(direct), statistics.median(tunneled), statistics.median(endpoint)


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
    invoke("provision", "-i", inv, *pins, env=env)
    invoke("deploy", "-i", inv, *pins, "--model", str(models["a"]), env=env)
    url = f"http://{info.host('lb1').address}:8080"
    key = Path(inv).with_suffix(".api-key").read_text().split()[0]
    print(f"lab {name}: 2 clusters x (1 head + 2 workers) + 1 balancer, {len(info.hosts)} hosts, model 1 MB")
    print("throughput, generated tokens/s (invoke bench's client, 64+64 tokens, 8 requests per client, medians of 3):")
    for per_head in (1, 2):
        heads, through, endpoint = throughput(info, key, per_head)
        print(f"  {per_head} client(s) per head: heads directly {heads:7.1f}; through the balancer "
              f"({2 * per_head} clients) {through:7.1f} = {through / heads:.2f}x (both over SSH tunnels); "
              f"its endpoint asked directly {endpoint:7.1f} = {endpoint / heads:.2f}x")  # fmt: skip

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
    on_own_lab(__doc__, "benchroll", measure)


if __name__ == "__main__":
    main()
