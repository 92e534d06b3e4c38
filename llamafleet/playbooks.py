"""What each task runs: phases of roles, in order (workers before the head)."""

from __future__ import annotations

from . import identity_gate
from .roles.model import prune as model_prune
from .runner import Phase

PROVISION = [
    Phase("base", ("base",)),
    Phase("llama_cpp", ("llama_cpp",)),  # built or fetched, staged beside the running release
    Phase("release", ("release",), needs_all=True),  # then every host switches together, or none
    Phase("firewall", ("firewall",)),
    Phase("workers", ("rpc_worker",), group="workers"),
    Phase("head", ("head",), group="head", needs_all=True),
]

# deploy: no model for a cluster whose builds differ; the model onto the head (and into the workers' RPC
# caches with rpc_cache_seed), the head restarted on it (the workers are provision's), then older models
# pruned, only once the head serves the new one.
DEPLOY = [
    Phase("identity", (identity_gate,)),
    Phase("model", ("model",)),
    Phase("head", ("head",), group="head"),
    Phase("prune", (model_prune,), needs_all=True),
]

# rollback: every host back to its previous release at once, then workers restarted, then the head.
ROLLBACK = [
    Phase("rollback", ("rollback",), needs_all=True),
    Phase("workers", ("rpc_worker",), group="workers"),
    Phase("head", ("head",), group="head", needs_all=True),
]

# teardown: the head first (it holds the workers' sessions), then every other host.
TEARDOWN = [
    Phase("head", ("teardown",), group="head"),
    Phase("teardown", ("teardown",)),
]
