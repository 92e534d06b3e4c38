"""`invoke inventory`: the resolved inventory printed per host (or as JSON), secrets and vaulted values hidden."""

from __future__ import annotations

import json
import sys
from typing import Any

from . import redaction, vault
from .inventory import Host, Inventory
from .variables import SECRET_VARS


def show(inv: Inventory, limit: str | None, json_mode: bool, show_vaulted: bool = False) -> None:
    """Print the hosts `limit` selects: their groups and every variable after precedence. A value that came out of
    a vault shows as "(vault)"; with `show_vaulted`, as it is, unless its variable is a secret."""
    chosen = {h.name for h in inv.select(limit)}
    doc = inv.to_json()
    doc["hosts"] = {k: v for k, v in doc["hosts"].items() if k in chosen}
    for name, host in doc["hosts"].items():
        host["vars"] = {
            k: _secrets_hidden(v) for k, v in _vaulted_hidden(inv.hosts[name], host["vars"], show_vaulted).items()
        }
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


def _secrets_hidden(value: Any) -> Any:
    """A value with what is secret inside it hidden: URLs' users, passwords and queries, and the value of a
    secret-carrying llama-server flag in an argument list (provision refuses those; the listing never shows them)."""
    from .roles.head.settings import secret_flag  # the head's flags: only when a list is shown

    if isinstance(value, str):
        return redaction.text_shown(value)
    if not isinstance(value, list):
        return value
    shown, hide_next = [], False
    for item in value:
        text = str(item)
        flag = next(filter(None, map(secret_flag, text.split())), None)
        if hide_next:
            shown.append(redaction.SECRET_SHOWN)
        elif flag is not None and "=" in text:
            shown.append(f"{text.split('=', 1)[0]}={redaction.SECRET_SHOWN}")
        else:
            shown.append(_secrets_hidden(item) if isinstance(item, (str, list)) else item)
        hide_next = flag is not None and "=" not in text and not hide_next
    return shown
