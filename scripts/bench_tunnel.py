"""Benchmark: what `cluster_tunnel: wireguard` costs a cluster of a head and 2 workers, against no tunnel, in one run.

On a lab of its own (`benchwg`, or --name), it prints, for the cluster without the tunnel and with it (switched by
a provision, back and forth, so each figure is measured twice and the medians compared):
- generated tokens/s through the head's API (invoke bench's client: 64 + 64 tokens, 1 and 2 clients);
- a deploy of a new model with rpc_cache_seed (the model sent to the head and its large tensors seeded into the
  workers' caches over RPC) until the head serves it, and the head's start (its journal, from start to ready);
- a no-op provision + deploy in one CLI process.
The lab's hosts share this machine's CPU, and wireguard-go (the lab's kernel has no WireGuard) runs in user space,
one system call and a few goroutine hand-offs per packet each way (Debian 12's 0.0.20220316 has no TUN offloads):
real hosts with the kernel's WireGuard pay less. So the tunnel's cost here is per packet and per round trip:
- per round trip: several RPC round trips per generated token, each through wireguard-go on both ends, add 2-4 ms
  per token. A model whose tokens take a few ms (--size 48M) shows that floor, not what a real model pays;
- per packet: each token's logits (n_vocab floats, 125 KiB for 32000) cross in MTU-sized packets, ~94 at the lab's
  default 1500 bytes (tunnel 1420), ~15 with jumbo frames (--link-mtu 9000: the tunnel takes 8920, wg-quick's link
  MTU minus 80).
Prints figures; asserts nothing. Needs the llama.cpp artifact cached (LLAMAFLEET_CACHE, e.g. the lab tier's), or
builds it once.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llamafleet import bench, lab  # noqa: E402
from scripts import make_gguf  # noqa: E402
from scripts.benchlab import invoke, on_own_lab  # noqa: E402

VERSION = "b11434"
# The default is a model of the smallest size people spread over RPC hosts (32000-token vocabulary, ~90 ms per token
# on the lab's shared cores), with tensors over 10 MiB so seeding has entries to send.
MODEL_SIZE = "1G"


def tokens_per_s(url: str, key: str, clients: int, rounds: int = 6) -> float:
    """Generated tokens/s of `clients` clients at once (invoke bench's Api and run_level), after a warm-up."""
    api = bench.Api(url, key)
    prompt = api.prompt(64)
    bench.run_level(api, prompt, 64, 1, 1)
    return bench.run_level(api, prompt, 64, clients, rounds).gen_tokens_per_s


def ratio(with_tunnel: list[float], without: list[float]) -> str:
    a, b = statistics.median(with_tunnel), statistics.median(without)
    return f"{a:8.2f} with, {b:8.2f} without: {a / b:.2f}x"


def options(parser) -> None:
    parser.add_argument("--size", default=MODEL_SIZE, help=f"generated models' size (make_gguf --size; {MODEL_SIZE})")
    parser.add_argument("--link-mtu", help="the lab's link MTU (lab.up --link-mtu; default 1500)")


def measure(name: str, env: dict[str, str], args) -> None:
    source = subprocess.run([sys.executable, str(ROOT / "scripts/fetch_llama_source.py"), VERSION],
                            capture_output=True, text=True, check=True).stdout.split()[0]  # fmt: skip
    pins = [
        "-e",
        f"llama_cpp_version={VERSION}",
        "-e",
        f"llama_cpp_source_archive={source}",
        "-e",
        "rpc_cache_seed=true",
    ]
    folder = Path(tempfile.mkdtemp(prefix="bench-tunnel-"))
    models = [folder / f"bench-{seed}.gguf" for seed in range(1, 6)]
    for seed, path in enumerate(models, 1):
        make_gguf.make_model(path, size=args.size, seed=seed)
    info = lab.up(name=name, workers=2, link_mtu=args.link_mtu)
    inv = info.inventory
    key_file = Path(inv).with_suffix(".api-key")
    url = f"http://{info.host('head').address}:8080"
    figures: dict[str, dict[str, list[float]]] = {"none": {}, "wireguard": {}}

    def record(mode: str, what: str, value: float) -> None:
        figures[mode].setdefault(what, []).append(value)

    next_model = iter(models)
    order = ["none", "wireguard", "none", "wireguard"]
    for mode in order:
        tunnel = ["-e", f"cluster_tunnel={mode}"]
        invoke("provision", "-i", inv, *pins, *tunnel, env=env)
        model = next(next_model)
        seconds, done = invoke("deploy", "-i", inv, *pins, *tunnel, "--model", str(model), env=env)
        said = done.stdout
        record(mode, "deploy of a new model with seeding, s", seconds)
        started = [line for line in said.splitlines() if "served it" in line]
        if started:  # "head served it N s after its restart"
            record(
                mode, "the head's start until it served, s", float(started[-1].rsplit(" served it ", 1)[1].split()[0])
            )
        key = key_file.read_text().split()[0]
        for clients in (1, 2):
            record(mode, f"generated tokens/s, {clients} client(s)", tokens_per_s(url, key, clients))
        noop, _ = invoke("provision", "-i", inv, *pins, *tunnel, "deploy", "-i", inv, *pins, *tunnel, "--model",
                         str(model), env=env)  # fmt: skip
        record(mode, "no-op provision + deploy, s", noop)
        print(f"  {mode}: done", flush=True)

    print(f"lab {name}: 1 head + 2 workers, links of MTU {info.link_mtu or 1500}, models of {args.size} with "
          "rpc_cache_seed, each mode measured twice (medians):")  # fmt: skip
    for what in figures["none"]:
        print(f"  {what:42} {ratio(figures['wireguard'].get(what, [0.0]), figures['none'][what])}")


def main() -> None:
    on_own_lab(__doc__, "benchwg", measure, options)


if __name__ == "__main__":
    main()
