"""Role tunnel/keys: on every host of a tunnelled cluster (and every balancer in front of one), WireGuard's tools and
the host's own key.

The private key is made on the host (`wg genkey`, root 0600) and stays there; role tunnel reads only its public
key. A host that comes back without its key (replaced, reinstalled) gets a new one, and its peers the new public
key on the same run.
"""

from __future__ import annotations

from llamafleet.cluster import TUNNEL_INTERFACE, Links
from llamafleet.facts import PathInfo
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell, packages
from llamafleet.roles import Role
from llamafleet.shell import quote

from . import wireguard

NAME = "tunnel_keys"
KERNEL = wireguard.KernelWireguard()


def links_of(ctx) -> Links | None:
    return ctx.run.fleet.links(ctx.name)


def package_names(kernel_wireguard: bool) -> list[str]:
    """wg and wg-quick everywhere; wireguard-go where the kernel has no WireGuard."""
    return [*wireguard.PACKAGES, *(() if kernel_wireguard else wireguard.USERSPACE_PACKAGES)]


def private_key(links: Links) -> Operation:
    """The host has its private key: made here if missing (umask 077: never readable by anyone but root)."""
    path = wireguard.key_path(links)
    info = PathInfo(path, False)
    make = quote(
        "umask 077 && install -d -m 0700 %s && wg genkey > %s.new && chmod 0600 %s.new && mv -f %s.new %s",
        wireguard.DIR,
        path,
        path,
        path,
        path,
    )

    def plan(facts: Facts):
        state = facts[info]
        if state is None or state.size == 0:
            return Change((Shell(make),), "no key yet")
        if (state.mode, state.owner, state.group) != (0o600, "root", "root"):
            return Change((Shell(quote("chown root:root %s && chmod 0600 %s", path, path)),), "mode or owner differ")
        return NoChange("key present, 0600 root:root")

    return Operation(f"private key {path}", [info], plan)


def operations(ctx):
    links = links_of(ctx)
    if links is None:
        return
    kernel = ctx.run.gather(ctx.host, [KERNEL])[KERNEL]
    yield packages.present(package_names(kernel), ctx.os["family"])
    yield private_key(links)


ROLE = Role(NAME, operations, prefetch=(KERNEL, wireguard.PublicKey(f"{wireguard.DIR}/{TUNNEL_INTERFACE}.key")))
