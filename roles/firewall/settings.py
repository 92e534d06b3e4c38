"""Role firewall's settings: its one knob, the frontend to manage, read for one host."""

from __future__ import annotations

from dataclasses import dataclass

from llamafleet import rolesettings
from llamafleet.inventory import Host
from llamafleet.rolesettings import choice, knob


@dataclass(frozen=True)
class FirewallSettings:
    """Which frontend holds llamafleet's rules on the host: auto, ufw, firewalld, nftables or none."""

    host: str
    firewall: str = knob(choice)


def settings(host: Host, file: str | None = None) -> FirewallSettings:
    return rolesettings.build(FirewallSettings, host, file)
