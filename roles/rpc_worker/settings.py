"""Role rpc_worker's variables (names as in its defaults.yml) read and checked for one host."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llamafleet import units, variables
from llamafleet.inventory import Host

# Device names as llama.cpp lists them (CUDA0, Vulkan1, ROCm0): joined with ',' into one -d argument.
DEVICE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SIZE = re.compile(r"[1-9][0-9]*[KMGT]?")


@dataclass(frozen=True)
class WorkerSettings:
    """What the worker's unit is made of, besides the addresses (those come from cluster.view)."""

    host: str
    llamafleet_user: str
    llama_cpp_backend: str
    rpc_host: str | None  # as set; the address bound is the cluster view's Worker.bind
    rpc_port: int
    rpc_threads: int | None
    rpc_devices: tuple[str, ...]
    rpc_cache_seed: bool
    rpc_cache_max_size: str | None  # e.g. 20G; kept for the cache-size task, not part of the unit


def settings(host: Host, file: str | None = None) -> WorkerSettings:
    """One worker's settings from its resolved variables (role defaults already applied by the inventory)."""
    read = units.HostVars(host.name, host.vars, file)
    return WorkerSettings(
        host=host.name,
        llamafleet_user=read.text("llamafleet_user"),
        llama_cpp_backend=read.choice("llama_cpp_backend", variables.catalogue()["llama_cpp_backend"].choices),
        rpc_host=read.text("rpc_host", optional=True),
        rpc_port=read.whole("rpc_port", 1),
        rpc_threads=read.whole("rpc_threads", 1, optional=True),
        rpc_devices=read.words("rpc_devices", DEVICE),
        rpc_cache_seed=read.flag("rpc_cache_seed"),
        rpc_cache_max_size=read.text("rpc_cache_max_size", optional=True, pattern=SIZE),
    )
