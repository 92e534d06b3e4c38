"""What the firewall role is asked for: a Ruleset of rules, built by the caller from the cluster view."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from llamafleet.errors import OperationError

PROTOCOLS = ("tcp", "udp")
TAG = "llamafleet"
_COMMENT = re.compile(r"[A-Za-z0-9 ._:/-]{0,60}")  # stays one word in ufw, nft and firewalld syntax
_INTERFACE = re.compile(r"[A-Za-z0-9_-]{1,15}")  # a Linux interface name, nothing a frontend's syntax reads


def _source(value: str) -> str:
    """A source address or network in canonical form: '10.0.0.1', '10.0.0.0/24', 'fd00::/64'."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise OperationError(f"firewall rule source {value!r} is not an IP address or CIDR network") from None
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


@dataclass(frozen=True)
class Rule:
    """Allow `proto` traffic to `port` from `sources` only (arriving on `interface`, when given: ufw and nftables;
    firewalld's rich rules match sources only); everyone else is refused on that port."""

    port: int
    sources: tuple[str, ...]
    comment: str
    proto: str = "tcp"
    interface: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise OperationError(f"firewall rule port {self.port!r} is not a port number")
        if self.proto not in PROTOCOLS:
            raise OperationError(f"firewall rule protocol {self.proto!r}: expected one of {', '.join(PROTOCOLS)}")
        if not self.sources:
            raise OperationError(f"firewall rule for port {self.port}: no source may connect, give at least one")
        if self.interface is not None and not _INTERFACE.fullmatch(self.interface):
            raise OperationError(f"firewall rule interface {self.interface!r}: letters, digits, '_-', up to 15")
        if not _COMMENT.fullmatch(self.comment):
            raise OperationError(f"firewall rule comment {self.comment!r}: letters, digits, ' ._:/-', up to 60")
        canonical = tuple(sorted({_source(s) for s in self.sources}, key=_sort_key))
        object.__setattr__(self, "sources", canonical)

    def __repr__(self) -> str:  # as before interfaces existed, for rules without one
        shown = f"Rule(port={self.port!r}, sources={self.sources!r}, comment={self.comment!r}, proto={self.proto!r}"
        return shown + (f", interface={self.interface!r})" if self.interface is not None else ")")

    @property
    def tag(self) -> str:
        """The comment that marks the rule as llamafleet's on the host."""
        return f"{TAG} {self.comment}".strip()

    @property
    def ipv4(self) -> tuple[str, ...]:
        return tuple(s for s in self.sources if ipaddress.ip_network(s).version == 4)

    @property
    def ipv6(self) -> tuple[str, ...]:
        return tuple(s for s in self.sources if ipaddress.ip_network(s).version == 6)


def _sort_key(source: str) -> tuple:
    network = ipaddress.ip_network(source)
    return (network.version, int(network.network_address), network.prefixlen)


@dataclass(frozen=True)
class Ruleset:
    """Every llamafleet rule one host should have; `ssh_port` stays open to everyone, always."""

    rules: tuple[Rule, ...]
    ssh_port: int = 22

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        seen: set[tuple[int, str]] = set()
        for rule in self.rules:
            if rule.port == self.ssh_port and rule.proto == "tcp":
                raise OperationError(f"firewall rule for port {rule.port}: that is the SSH port, it stays open to all")
            if (rule.port, rule.proto) in seen:
                raise OperationError(f"two firewall rules for {rule.port}/{rule.proto}: merge their sources")
            seen.add((rule.port, rule.proto))
