"""The lab network: a /24 per lab, its bridge, NAT to the package mirrors, and link shaping."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path

from .paths import bridge_name, nft_table
from .system import LabError, run

LAB_RANGE = ipaddress.ip_network("10.213.0.0/16")
FORWARD_SYSCTL = Path("/proc/sys/net/ipv4/ip_forward")
# --link-mtu: from IPv6's minimum link MTU to the largest jumbo frames switches commonly take
MTU_RANGE = (1280, 9216)
RATE_PATTERN = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps|tbps)", re.I)
DELAY_PATTERN = re.compile(r"\d+(?:\.\d+)?(us|ms|s)", re.I)
RATE_FACTORS = {
    "bit": 1,
    "kbit": 1e3,
    "mbit": 1e6,
    "gbit": 1e9,
    "tbit": 1e12,
    "bps": 8,
    "kbps": 8e3,
    "mbps": 8e6,
    "gbps": 8e9,
    "tbps": 8e12,
}


def _ip_json(*args: str) -> list:
    out = run(["ip", "-j", *args], what=f"reading `ip {' '.join(args)}`").stdout
    return json.loads(out or "[]")


def networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network on this machine's interfaces and in its routing tables."""
    found = []
    for link in _ip_json("-4", "addr", "show"):
        for addr in link.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "default")
        if dst != "default" and not dst.startswith(("127.", "255.")) and "/" in dst:
            found.append(ipaddress.ip_network(dst, strict=False))
    return found


def pick_subnet(name: str, reserved: Iterable[str] = ()) -> ipaddress.IPv4Network:
    """The lab's /24: hashed from its name, moved to the next free one on a collision."""
    taken = networks_in_use() + [ipaddress.ip_network(net) for net in reserved]
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 256
    for step in range(256):
        third = (start + step) % 256
        candidate = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise LabError(f"lab {name}: no free /24 left in {LAB_RANGE}")


def link_exists(ifname: str) -> bool:
    return run(["ip", "link", "show", "dev", ifname], what="", check=False).returncode == 0


def wait_link_gone(ifname: str, timeout: float) -> None:
    """Return once `ifname` is gone. A container's veth goes with its network namespace, which the kernel tears
    down in the background after the container's last process: seconds late when many namespaces go at once,
    and a new container cannot take the name before. LabError after `timeout`."""
    deadline = time.monotonic() + timeout
    while link_exists(ifname):
        if time.monotonic() > deadline:
            raise LabError(f"interface {ifname} still there {timeout:.0f} s after its container stopped")
        time.sleep(0.2)


def create_bridge(name: str, subnet: ipaddress.IPv4Network, mtu: int | None = None) -> str:
    """The lab's bridge with the gateway address (.1) on it (and the links' MTU, when given)."""
    bridge = bridge_name(name)
    gateway = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    size = ["mtu", str(mtu)] if mtu else []
    run(["ip", "link", "add", bridge, *size, "type", "bridge"], what=f"lab {name}: creating bridge {bridge}")
    run(["ip", "addr", "add", gateway, "dev", bridge], what=f"lab {name}: addressing {bridge}")
    run(["ip", "link", "set", bridge, "up"], what=f"lab {name}: bringing {bridge} up")
    return bridge


def delete_link(ifname: str) -> None:
    """Delete a network interface the lab created, if it is still there."""
    if link_exists(ifname):
        run(["ip", "link", "delete", ifname], what=f"deleting interface {ifname}")


def delete_bridge(name: str) -> None:
    delete_link(bridge_name(name))


def nat_ruleset(name: str, subnet: ipaddress.IPv4Network) -> str:
    """The lab's own nft table: masquerade what leaves the lab subnet."""
    return (
        f"table ip {nft_table(name)} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {subnet} ip daddr != {subnet} masquerade\n"
        "  }\n"
        "}\n"
    )


def create_nat(name: str, subnet: ipaddress.IPv4Network) -> None:
    run(["nft", "-f", "-"], input=nat_ruleset(name, subnet), what=f"lab {name}: adding the NAT table")


def nft_table_exists(name: str) -> bool:
    argv = ["nft", "list", "table", "ip", nft_table(name)]
    return run(argv, what="", check=False).returncode == 0


def delete_nat(name: str) -> None:
    if nft_table_exists(name):
        run(["nft", "delete", "table", "ip", nft_table(name)], what=f"lab {name}: deleting the NAT table")


def enable_forwarding(marker: Path) -> None:
    """ip_forward=1; a marker remembers that it was 0 so the last lab down can restore it."""
    if FORWARD_SYSCTL.read_text().strip() != "1":
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("0\n")
        FORWARD_SYSCTL.write_text("1\n")


def restore_forwarding(marker: Path) -> None:
    """Put ip_forward back to 0 when a lab turned it on and no lab bridge is left."""
    if marker.exists() and not any(link["ifname"].startswith("lfbr-") for link in _ip_json("link")):
        FORWARD_SYSCTL.write_text("0\n")
        marker.unlink()


def veth_of(init_pid: int) -> str:
    """The host-side veth of a container: the peer (link_index) of its host0, found by ifindex.

    nspawn names it vb-<machine> but hashes names past 15 characters, so ask the kernel instead.
    """
    argv = ["nsenter", "-t", str(init_pid), "-n", "ip", "-j", "link", "show", "host0"]
    inside = json.loads(run(argv, what=f"reading host0 of pid {init_pid}").stdout)
    peer = inside[0]["link_index"]
    for link in _ip_json("link", "show"):
        if link["ifindex"] == peer:
            return link["ifname"]
    raise LabError(f"no host interface with ifindex {peer} (peer of host0 in pid {init_pid})")


def check_mtu(mtu: int | str | None) -> int | None:
    """The --link-mtu value as a number (None: the kernel's 1500); LabError for anything but MTU_RANGE's."""
    if mtu is None:
        return None
    text = str(mtu).strip()
    if not text.isdigit() or not MTU_RANGE[0] <= int(text) <= MTU_RANGE[1]:
        raise LabError(f"--link-mtu {mtu!r}: use a number from {MTU_RANGE[0]} to {MTU_RANGE[1]}, e.g. 9000 for jumbo "
                       "frames")  # fmt: skip
    return int(text)


def set_mtu(host: str, veth: str, mtu: int | None) -> None:
    """The host side of a container's link at the lab's MTU (host0, its other side, gets it from networkd)."""
    if mtu:
        run(["ip", "link", "set", "dev", veth, "mtu", str(mtu)], what=f"{host}: setting the MTU of {veth}")


def check_shaping(rate: str | None, delay: str | None) -> None:
    """Reject malformed --link-rate / --link-delay values before anything is created."""
    if rate is not None and not RATE_PATTERN.fullmatch(rate):
        raise LabError(f"--link-rate {rate!r}: use a tc rate such as 1gbit, 100mbit or 50mbps")
    if delay is not None and not DELAY_PATTERN.fullmatch(delay):
        raise LabError(f"--link-delay {delay!r}: use a tc time such as 0.2ms, 500us or 1s")


def shaping_commands(veth: str, rate: str | None, delay: str | None) -> list[list[str]]:
    """tc commands: tbf for the rate (burst = 10 ms of traffic), netem (child of tbf) for delay."""
    base = ["tc", "qdisc", "replace", "dev", veth]
    if rate is None and delay is None:
        return []
    if rate is None:
        return [[*base, "root", "netem", "delay", delay]]
    number, unit = RATE_PATTERN.fullmatch(rate).groups()
    burst = max(int(float(number) * RATE_FACTORS[unit.lower()] / 8 / 100), 16 * 1024)
    commands = [[*base, "root", "handle", "1:", "tbf", "rate", rate, "burst", str(burst), "latency", "50ms"]]
    if delay is not None:
        commands.append([*base, "parent", "1:1", "handle", "10:", "netem", "delay", delay])
    return commands


def probe_delay_support(lab: str) -> None:
    """Fail before anything is torn down or booted when --link-delay cannot work on this kernel.

    The probe is a throw-away veth pair of the lab's own, so no existing interface is touched.
    """
    probe, peer = f"lfq-{lab}", f"lfp-{lab}"
    delete_link(probe)
    run(["ip", "link", "add", probe, "type", "veth", "peer", "name", peer], what="creating the netem probe")
    try:
        argv = ["tc", "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms"]
        proc = run(argv, what=f"probing netem on {probe}", check=False)
    finally:
        run(["ip", "link", "delete", probe], what=f"removing the netem probe {probe}")
    if proc.returncode != 0:
        raise LabError(
            "--link-delay needs the sch_netem qdisc, which this kernel lacks (CONFIG_NET_SCH_NETEM); "
            "--link-rate (tbf) works without it"
        )


def shape_link(host: str, veth: str, rate: str | None, delay: str | None) -> None:
    for argv in shaping_commands(veth, rate, delay):
        run(argv, what=f"{host}: shaping {veth}")
