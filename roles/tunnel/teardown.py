"""Role tunnel/teardown: the tunnel down and its configuration gone (invoke teardown); with --purge the host's key
too (a later provision makes a new one, which its peers learn)."""

from __future__ import annotations

from llamafleet.cluster import TUNNEL_INTERFACE
from llamafleet.operations import files
from llamafleet.roles import Role
from llamafleet.roles.teardown.role import Purge

from . import role as tunnel

NAME = "tunnel_teardown"


def operations(ctx):
    yield tunnel.down(TUNNEL_INTERFACE)
    yield files.absent(tunnel.CONFIG)
    if ctx.run.handoff(Purge).purge:
        yield files.absent(f"{tunnel.wireguard.DIR}/{TUNNEL_INTERFACE}.key")


ROLE = Role(NAME, operations)
