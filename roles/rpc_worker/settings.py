"""Role rpc_worker's settings: its knobs (names as in its defaults.yml) read for one worker."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llamafleet import rolesettings
from llamafleet.inventory import Host
from llamafleet.rolesettings import choice, flag, knob, line, whole, words

# Device names as llama.cpp lists them (CUDA0, Vulkan1, ROCm0): joined with ',' into one -d argument.
DEVICE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SIZE = re.compile(r"[1-9][0-9]*[KMGT]?")


@dataclass(frozen=True)
class WorkerSettings:
    """What the worker's unit is made of, besides the addresses (those come from cluster.view)."""

    host: str
    llamafleet_user: str = knob(line())
    llama_cpp_backend: str = knob(choice)
    rpc_host: str | None = knob(line())  # as set; the address bound is the cluster view's Worker.bind
    rpc_port: int = knob(whole(1))
    rpc_threads: int | None = knob(whole(1))
    rpc_devices: tuple[str, ...] = knob(words(DEVICE))
    rpc_cache_seed: bool = knob(flag)
    rpc_cache_max_size: str | None = knob(line(SIZE))  # e.g. 20G; kept for the cache-size task, not part of the unit


def settings(host: Host, file: str | None = None) -> WorkerSettings:
    """One worker's settings from its resolved variables."""
    return rolesettings.build(WorkerSettings, host, file)
