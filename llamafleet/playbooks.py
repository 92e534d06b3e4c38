"""What each task runs: phases of roles, in order (workers before the head)."""

from __future__ import annotations

from .runner import Phase

PROVISION = [
    Phase("base", ("base",)),
    Phase("llama_cpp", ("llama_cpp",)),
]

# Roles still to come: firewall, rpc_worker, model, head (their variables are already documented).
PENDING_ROLES = ("firewall", "rpc_worker", "model", "head")
