"""Memory fit check before the head starts: the model against the memory the head and the workers report."""

from __future__ import annotations

from llamafleet.errors import GateError
from llamafleet.inventory import clusters_of

from . import facts as model_facts

# Besides the weights: KV cache, compute buffers, the runtime. A rough share, meant to catch the hopeless cases.
OVERHEAD = 1.10


def usable(memory: dict[str, int]) -> int:
    """What a host can give the model: available now, plus what llama.cpp's own services hold (they restart)."""
    return memory["available"] + memory["held"]


def shortfall(size: int, memories: dict[str, dict[str, int]]) -> str | None:
    """None when a model of `size` bytes fits in the hosts' memory; else what is missing and what to do."""
    need = int(size * OVERHEAD)
    have = {host: usable(memory) for host, memory in memories.items()}
    if need <= sum(have.values()):
        return None
    each = ", ".join(f"{host} {value / 1e9:.2f}" for host, value in have.items())
    return (
        f"the model needs about {need / 1e9:.2f} GB of memory ({size / 1e9:.2f} GB of weights + 10%), the hosts "
        f"can give {sum(have.values()) / 1e9:.2f} GB ({each}): add workers, use a smaller quantisation, or keep "
        "layers off the hosts that lack memory (n_gpu_layers, tensor_split); nothing was sent"
    )


def check(run, model) -> None:
    """GateError naming the numbers when the model cannot fit in a cluster of this run (read on its head and
    workers)."""
    fact = model_facts.Memory()
    clusters = clusters_of(run.inventory)
    for members in clusters.values():
        hosts = [members.head, *members.workers]
        if len(clusters) > 1 and not any(host in run.hosts for host in hosts):
            continue  # a cluster this run leaves alone (a rolling deploy's other clusters)
        if any(host not in run.hosts for host in hosts):
            run.say(f"{model.name}: memory fit not checked (--limit leaves out hosts that would hold it)")
            continue
        memories = {host.name: run.gather(host, [fact])[fact] for host in hosts}
        problem = shortfall(model.size, memories)
        if problem:
            where = "" if len(clusters) == 1 else f"cluster {members.name}: "
            raise GateError(f"{model.name}: {where}{problem}")
