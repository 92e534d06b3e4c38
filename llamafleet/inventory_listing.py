"""`invoke inventory`: the resolved inventory printed per host (or as JSON), secrets and vaulted values hidden."""

from __future__ import annotations

import json
import sys
from typing import Any

from . import vault
from .inventory import Host, Inventory
from .variables import SECRET_VARS


def show(inv: Inventory, limit: str | None, json_mode: bool, show_vaulted: bool = False) -> None:
    """Print the hosts `limit` selects: their groups and every variable after precedence. A value that came out of
    a vault shows as "(vault)"; with `show_vaulted`, as it is, unless its variable is a secret."""
    chosen = {h.name for h in inv.select(limit)}
    doc = inv.to_json()
    doc["hosts"] = {k: v for k, v in doc["hosts"].items() if k in chosen}
    for name, host in doc["hosts"].items():
        host["vars"] = _vaulted_hidden(inv.hosts[name], host["vars"], show_vaulted)
    if json_mode:
        json.dump(doc, sys.stdout, indent=2, default=str)
        print()
        return
    for name, host in doc["hosts"].items():
        print(f"{name}  groups: {', '.join(host['groups']) or '-'}")
        for key, value in host["vars"].items():  # secrets and vaulted values are hidden already
            if value not in (None, [], {}, ""):
                print(f"    {key}: {value}")


def _vaulted_hidden(host: Host, shown: dict[str, Any], show_vaulted: bool) -> dict[str, Any]:
    """`shown` (a host's variables, secrets hidden) with what came out of a vault hidden too, or unmarked."""
    result = {}
    for key, value in shown.items():
        if not vault.holds_vaulted(host.vars.get(key)):
            result[key] = value
        elif show_vaulted and key not in SECRET_VARS:
            result[key] = vault.unmarked(value)
        else:
            result[key] = vault.shown(host.vars[key])
    return result
