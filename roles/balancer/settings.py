"""Role balancer's settings: its knobs (names as in its defaults.yml) read for one balancer host."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from llamafleet import rolesettings
from llamafleet.inventory import Host
from llamafleet.rolesettings import Refused, knob, line, whole
from llamafleet.variables import Variable
from llamafleet.yamlfile import shorten

_ONE_LINE = line()


def _ipv4(value: Any, variable: Variable) -> str:
    text = _ONE_LINE(value, variable)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise Refused(f"{shorten(text)!r} is not an IPv4 address (0.0.0.0 listens on every one)") from None


@dataclass(frozen=True)
class BalancerSettings:
    """What the balancer's HAProxy configuration is made of; the heads come from the run's clusters."""

    host: str
    balancer_host: str = knob(_ipv4)
    balancer_port: int = knob(whole(1))
    balancer_check_interval: int = knob(whole(1))
    balancer_timeout: int = knob(whole(1))
    balancer_drain_timeout: int = knob(whole(0))


def settings(host: Host, file: str | None = None) -> BalancerSettings:
    return rolesettings.build(BalancerSettings, host, file)
