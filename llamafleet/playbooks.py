"""What each task runs: phases of roles, in order (workers before the head)."""

from __future__ import annotations

from .roles import sibling
from .runner import Phase
from .variables import ROLES_DIR

PROVISION = [
    Phase("base", ("base",)),
    Phase("llama_cpp", ("llama_cpp",)),
    Phase("firewall", ("firewall",)),
    Phase("workers", ("rpc_worker",), group="workers"),
    Phase("head", ("head",), group="head", needs_all=True),
]

# deploy: the model onto the head (and into the workers' RPC caches with rpc_cache_seed), the head restarted on
# it (the workers are provision's), then older models pruned, only once the head serves the new one.
DEPLOY = [
    Phase("model", ("model",)),
    Phase("head", ("head",), group="head"),
    Phase("prune", (sibling(str(ROLES_DIR / "model" / "role.py"), "prune"),), needs_all=True),
]
