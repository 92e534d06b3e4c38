"""Bringing a lab up and tearing it down; `down` also undoes whatever a crashed `up` left."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cgroups, layout, limits, network
from . import host as host_mod
from .base import FIREWALL_PACKAGES, Layer, ensure_base, ensure_layer, layer_for
from .inventory import create_user_key, remove_generated, ssh_argv, write_inventory, write_known_hosts
from .mounts import unmount_all_under
from .paths import (
    bridge_name,
    cache_dir,
    check_name,
    former_cache_dir,
    inventory_dir,
    lab_dir,
    machine_name,
    nft_table,
    state_roots,
)
from .state import STATE_FILE, LabHost, LabInfo, load, save
from .system import LabError, ensure_host_tools, remove_tree, require_root

FRONTENDS = ("auto", "none", *FIREWALL_PACKAGES)
NSPAWN_RUNTIME = Path("/run/systemd/nspawn/propagate")
VETH_GONE_SECONDS = 60  # a rebooted host's old veth, gone with its network namespace


def forwarding_marker() -> Path:
    """The marker saying a lab turned IP forwarding on (in a former state root, if an earlier version made it)."""
    found = [root / ".ip_forward_was_0" for root in state_roots()]
    return next((marker for marker in found if marker.exists()), found[0])


def firewall_frontends(spec: str, hosts: list[str]) -> dict[str, str]:
    """`ufw,nftables` -> head ufw, w1.. nftables: a list is spread over hosts in order, the last repeats."""
    items = [item.strip() for item in str(spec).split(",")]
    bad = [item for item in items if item not in FRONTENDS]
    if bad:
        raise LabError(
            f"--firewall {spec!r}: unknown {', '.join(map(repr, bad))}; "
            f"use {'|'.join(FRONTENDS)} or a comma list of them"
        )
    return {host: items[min(index, len(items) - 1)] for index, host in enumerate(hosts)}


def lab_hosts(
    name: str, planned: list[layout.PlannedHost], frontends: dict[str, str], subnet: ipaddress.IPv4Network
) -> list[LabHost]:
    """The planned hosts with their addresses (.2 upwards, in order), machine names, frontends and directories."""
    first = subnet.network_address + 2
    return [
        LabHost(
            name=host.name,
            group=host.group,
            machine=machine_name(name, host.name),
            address=str(first + index),
            firewall=frontends[host.name],
            dir=str(lab_dir(name) / host.name),
            cluster=host.cluster,
        )
        for index, host in enumerate(planned)
    ]


def host_layer(host: LabHost) -> Layer | None:
    """The package layer a lab host boots on (None: the bare base)."""
    return layer_for(host.firewall, host.group == "balancers")


def _new_info(
    name: str,
    planned: list[layout.PlannedHost],
    frontends: dict[str, str],
    rate: str | None,
    delay: str | None,
    mtu: int | None = None,
) -> LabInfo:
    reserved = [info.subnet for info in status() if info.name != name]
    subnet = network.pick_subnet(name, reserved)
    files = inventory_dir()
    return LabInfo(
        name=name,
        subnet=str(subnet),
        bridge=bridge_name(name),
        nft_table=nft_table(name),
        inventory=str((files / f"{name}.yml").absolute()),
        known_hosts=str((files / f"{name}.known_hosts").absolute()),
        key=str((files / f"{name}.key").absolute()),
        hosts=lab_hosts(name, planned, frontends, subnet),
        link_rate=rate,
        link_delay=delay,
        link_mtu=mtu,
    )


def up(
    name: str = "lab",
    workers: int = 2,
    firewall: str = "none",
    link_rate: str | None = None,
    link_delay: str | None = None,
    say: Callable[[str], None] = print,
    clusters: int = 1,
    balancers: int = 0,
    link_mtu: int | str | None = None,
) -> LabInfo:
    """Create (or recreate) lab `name`: `clusters` of a head and `workers` hosts each, and `balancers` hosts,
    booted, reachable by SSH (layout.plan names them).

    Every value is checked before anything is touched. Before anything boots, the machine's limits are
    checked (limits.py): `say` gets one line per kernel limit raised for the lab; a limit that cannot be
    raised stops it with a LabError.
    """
    check_name(name)
    planned = layout.plan(clusters, workers, balancers)
    frontends = firewall_frontends(firewall, [host.name for host in planned])
    network.check_shaping(link_rate, link_delay)
    mtu = network.check_mtu(link_mtu)
    require_root()
    ensure_host_tools()
    if link_delay:
        network.probe_delay_support(name)
    down(name)
    limits.ensure(len(frontends), say)
    base_root, _ = ensure_base()
    _note_former_cache(say)
    layers = _ensure_layers(base_root, [layer_for(frontends[h.name], h.group == "balancers") for h in planned])
    info = _new_info(name, planned, frontends, link_rate, link_delay, mtu)
    info.base = str(base_root)
    try:
        _create(info, base_root, layers)
    except BaseException:
        if os.environ.get("LLAMAFLEET_LAB_KEEP_FAILED") != "1":  # set it to inspect a failed boot
            down(name)
        raise
    return info


def _ensure_layers(base_root: Path, wanted: list[Layer | None]) -> dict[str, Path]:
    """Each layer asked for, built once (in name order) if the cache lacks it: name -> its upper directory."""
    layers = {layer.name: layer for layer in wanted if layer is not None}
    return {key: ensure_layer(base_root, layers[key]) for key in sorted(layers)}


def _note_former_cache(say: Callable[[str], None]) -> None:
    """Once no lab of an earlier version is left, say that its cache (inside llamafleet's host trees) can go."""
    former = former_cache_dir()
    if former is not None and len(state_roots()) == 1:
        say(f"note: {former} is the lab cache of an earlier version, no longer used (now {cache_dir()}): remove it")


def _create(info: LabInfo, base_root: Path, layers: dict[str, Path]) -> None:
    save(info)
    network.enable_forwarding(forwarding_marker())
    network.create_bridge(info.name, ipaddress.ip_network(info.subnet), info.link_mtu)
    network.create_nat(info.name, ipaddress.ip_network(info.subnet))
    pubkey = create_user_key(Path(info.key), info.name)

    def prepare(host: LabHost) -> str:
        layer = host_layer(host)
        lowers = [layers[layer.name], base_root] if layer else [base_root]
        return host_mod.prepare(info, host, lowers, pubkey)

    host_keys = dict(zip([h.name for h in info.hosts], _parallel(prepare, info.hosts), strict=True))
    write_known_hosts(Path(info.known_hosts), host_keys, info.hosts)
    for host in info.hosts:
        host_mod.spawn(info.name, host, info.bridge)
    save(info)
    _parallel(host_mod.find_init, info.hosts)
    save(info)
    _parallel(lambda h: host_mod.wait_ready(h, ssh_argv(info, h)), info.hosts)
    for host in info.hosts:
        _configure_link(info, host)
    write_inventory(info)
    save(info)


def _configure_link(info: LabInfo, host: LabHost) -> None:
    """A booted host's veth found and given the lab's MTU and shaping (at lab.up and after each reboot)."""
    host.veth = network.veth_of(host.init_pid)
    network.set_mtu(host.name, host.veth, info.link_mtu)
    network.shape_link(host.name, host.veth, info.link_rate, info.link_delay)


def _parallel(function: Callable[[LabHost], object], hosts: list[LabHost]) -> list:
    """Run function for every host at once; raise one LabError listing every host that failed."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(hosts), 16))) as pool:
        futures = [pool.submit(function, host) for host in hosts]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        if len(errors) == 1 or not all(isinstance(e, LabError) for e in errors):
            raise errors[0]
        raise LabError("; ".join(str(e) for e in errors)) from errors[0]
    return [f.result() for f in futures]


def down(name: str = "lab") -> None:
    """Remove everything lab `name` made, from its state and from its names; idempotent."""
    check_name(name)
    require_root()
    ensure_host_tools(("ip", "nft"))
    info, directory = load(name), lab_dir(name)
    hostdirs = sorted(d for d in directory.iterdir() if d.is_dir()) if directory.is_dir() else []
    host_mod.stop(hostdirs)
    host_mod.kill_now(cgroups.members(name), f"lab {name}")  # strays still in the lab's cgroups
    cgroups.remove(name)
    unmount_all_under(directory)
    network.delete_bridge(name)
    network.delete_link(f"lfq-{name}")  # a netem probe left by a killed up
    for host in info.hosts if info else []:
        if host.veth:
            network.delete_link(host.veth)
    network.delete_nat(name)
    for hostdir in hostdirs:
        remove_tree(NSPAWN_RUNTIME / machine_name(name, hostdir.name))
    remove_tree(directory)
    remove_generated(inventory_dir(), name)
    if info:
        remove_generated(Path(info.inventory).parent, name)
    network.restore_forwarding(forwarding_marker())
    for former in state_roots()[1:]:  # an earlier version's state root goes with its last lab
        with contextlib.suppress(OSError):
            former.rmdir()


def status(name: str | None = None) -> list[LabInfo]:
    """The labs recorded on this machine (or just `name`), each host with `.running`."""
    if name is not None:
        names = [check_name(name)]
    else:
        found = {d.name for root in state_roots() if root.is_dir() for d in root.iterdir() if (d / STATE_FILE).exists()}
        names = sorted(found)
    return [info for info in map(load, names) if info is not None]


def shell_command(name: str, host: str) -> list[str]:
    """argv of an interactive ssh into a lab host (lab key, pinned known_hosts, checking on)."""
    info, target = _lab_host(name, host)
    return ssh_argv(info, target, batch=False)


def reboot(name: str, host: str) -> LabHost:
    """Reboot one host of lab `name` as a VM reboots: a clean poweroff (units stop in order), then a boot on the
    same root (every file stays; enabled units start). Returns once sshd answers with the pinned key and
    systemd says running (bounded waits, LabError naming the host). The lab's state then holds the new
    pids and veth, so `down` finds them.
    """
    info, target = _lab_host(name, host)
    require_root()
    host_mod.power_off(target)
    veth, target.pid, target.init_pid, target.veth = target.veth, None, None, None
    save(info)
    if veth:  # the new boot's veth takes the same name
        network.wait_link_gone(veth, VETH_GONE_SECONDS)
    host_mod.spawn(info.name, target, info.bridge)
    save(info)
    host_mod.find_init(target)
    save(info)
    host_mod.wait_ready(target, ssh_argv(info, target))
    _configure_link(info, target)
    save(info)
    return target


def _lab_host(name: str, host: str) -> tuple[LabInfo, LabHost]:
    """The recorded lab and its host `host`; a one-line LabError when either is not there."""
    info = load(check_name(name))
    if info is None:
        raise LabError(f"lab {name} is not up (no state in {lab_dir(name)}): run `invoke lab.up --name {name}`")
    try:
        return info, info.host(host)
    except KeyError:
        known = ", ".join(h.name for h in info.hosts)
        raise LabError(f"lab {name} has no host {host!r} (hosts: {known})") from None
