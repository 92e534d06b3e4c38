"""firewalld: not supported yet; choosing it (or auto on a host where firewalld runs) fails the host, saying so."""

from __future__ import annotations

from llamafleet.errors import OperationError


def firewalld_rules(plan) -> list:
    raise OperationError("firewall: firewalld is not supported yet")
