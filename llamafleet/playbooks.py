"""What each task runs: phases of roles, in order (workers before the head)."""

from __future__ import annotations

from .runner import Phase

PROVISION = [
    Phase("base", ("base",)),
]

# Roles still to come: firewall, rpc_worker, head (their variables are already documented).
PENDING_ROLES = ("firewall", "rpc_worker", "model", "head")
