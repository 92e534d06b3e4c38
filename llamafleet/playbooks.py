"""What each task runs: phases of roles, in order (workers before the head); roles load with the task that uses them."""

from __future__ import annotations

from .roles import load
from .runner import Phase


def provision() -> list[Phase]:
    return [
        Phase("base", (load("base"),)),
        Phase("llama_cpp", (load("llama_cpp"),)),  # built or fetched, staged beside the running release
        Phase("release", (load("release"),), needs_all=True),  # then every host switches together, or none
        Phase("firewall", (load("firewall"),)),
        Phase("workers", (load("rpc_worker"),), group="workers"),
        Phase("head", (load("head"),), group="head", needs_all=True),
    ]


def deploy() -> list[Phase]:
    """No model for a cluster whose builds differ; the model onto the head (and into the workers' RPC caches with
    rpc_cache_seed), the head restarted on it (the workers are provision's), then older models pruned, only once
    the head serves the new one."""
    return [
        Phase("identity", (load("llama_cpp/gate"),)),
        Phase("model", (load("model"),)),
        Phase("head", (load("head"),), group="head"),
        Phase("prune", (load("model/prune"),), needs_all=True),
    ]


def rollback() -> list[Phase]:
    """Every host back to its previous release at once, then workers restarted, then the head."""
    return [
        Phase("rollback", (load("rollback"),), needs_all=True),
        Phase("workers", (load("rpc_worker"),), group="workers"),
        Phase("head", (load("head"),), group="head", needs_all=True),
    ]


def teardown() -> list[Phase]:
    """The head first (it holds the workers' sessions), then every other host."""
    return [
        Phase("head", (load("teardown"),), group="head"),
        Phase("teardown", (load("teardown"),)),
    ]
