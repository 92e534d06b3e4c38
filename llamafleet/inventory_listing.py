"""`invoke inventory`: the resolved inventory printed per host (or as JSON), secrets hidden."""

from __future__ import annotations

import json
import sys

from .inventory import Inventory


def show(inv: Inventory, limit: str | None, json_mode: bool) -> None:
    """Print the hosts `limit` selects: their groups and every variable after precedence."""
    chosen = {h.name for h in inv.select(limit)}
    doc = inv.to_json()
    doc["hosts"] = {k: v for k, v in doc["hosts"].items() if k in chosen}
    if json_mode:
        json.dump(doc, sys.stdout, indent=2, default=str)
        print()
        return
    for name, host in doc["hosts"].items():
        print(f"{name}  groups: {', '.join(host['groups']) or '-'}")
        for key, value in host["vars"].items():  # to_json() has hidden the secrets already
            if value not in (None, [], {}, ""):
                print(f"    {key}: {value}")
