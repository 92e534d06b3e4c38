"""What each task runs: phases of roles, in order (workers before the head)."""

from __future__ import annotations

from . import identity_gate
from .runner import Phase

PROVISION = [
    Phase("base", ("base",)),
    Phase("llama_cpp", ("llama_cpp",)),
    Phase("firewall", ("firewall",)),
    Phase("workers", ("rpc_worker",), group="workers"),
    Phase("head", ("head",), group="head", needs_all=True),
]

# deploy: no model for a cluster whose builds differ; the model onto the head, then the head restarted on it
# (the workers are provision's).
DEPLOY = [
    Phase("identity", (identity_gate,)),
    Phase("model", ("model",), group="head"),
    Phase("head", ("head",), group="head"),
]
