"""Benchmark: what `cluster_tunnel: wireguard` costs a cluster of a head and 2 workers, against no tunnel, in one run.

On a lab of its own (`benchwg`, or --name), it prints, for the cluster without the tunnel and with it (switched by
a provision, back and forth, so each figure is measured twice and the medians compared):
- generated tokens/s through the head's API (invoke bench's client: 64 + 64 tokens, 1 and 2 clients);
- a deploy of a new model with rpc_cache_seed (the model sent to the head and its large tensors seeded into the
  workers' caches over RPC) until the head serves it, and the head's start (its journal, from start to ready);
- a no-op provision + deploy in one CLI process.
The lab's hosts share this machine's CPU, and wireguard-go (the lab's kernel has no WireGuard) runs in user space:
real hosts with the kernel's WireGuard pay less. Prints figures; asserts nothing. Needs the llama.cpp artifact
cached (LLAMAFLEET_CACHE, e.g. the lab tier's), or builds it once.
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
# The default has tensors over 10 MiB, so seeding has entries to send; its tokens take ~5 ms of compute, so each
# round trip between head and workers (several per token) weighs on them as it would not with a real model.
MODEL_SIZE = "48M"


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
    info = lab.up(name=name, workers=2)
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

    print(f"lab {name}: 1 head + 2 workers, models of {args.size} with rpc_cache_seed, each mode measured twice "
          "(medians):")  # fmt: skip
    for what in figures["none"]:
        print(f"  {what:42} {ratio(figures['wireguard'].get(what, [0.0]), figures['none'][what])}")


def main() -> None:
    on_own_lab(__doc__, "benchwg", measure, options)


if __name__ == "__main__":
    main()
