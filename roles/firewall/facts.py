"""Facts about the host's firewall frontends: which are there and active, and llamafleet's rules in each."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from llamafleet.facts import Fact
from llamafleet.shell import quote

NFT_TABLE = ("inet", "llamafleet")


@dataclass(frozen=True)
class Frontends:
    """Which firewall frontends are installed, and which one is in charge right now."""

    installed: frozenset[str]
    ufw_active: bool = False
    firewalld_running: bool = False
    nftables_enabled: bool = False


class FirewallFrontends(Fact):
    """ufw's status line, firewalld's state and nftables.service's state, for the tools that exist."""

    def command(self) -> str:
        return (
            'if command -v ufw >/dev/null; then echo "ufw $(ufw status | sed -n 1p)"; fi\n'
            'if command -v firewall-cmd >/dev/null; then echo "firewalld $(firewall-cmd --state 2>&1)"; fi\n'
            'if command -v nft >/dev/null; then echo "nftables $(systemctl is-enabled nftables.service 2>&1)"; fi'
        )

    def process(self, lines: list[str]) -> Frontends:
        states = dict(line.split(" ", 1) for line in lines if " " in line)
        return Frontends(
            installed=frozenset(states),
            ufw_active=states.get("ufw") == "Status: active",
            firewalld_running=states.get("firewalld") == "running",
            nftables_enabled=states.get("nftables") == "enabled",
        )


@dataclass(frozen=True)
class UfwState:
    """ufw's status, its default incoming policy and its added rules, each as the words after `ufw`."""

    active: bool
    default_incoming: str | None
    rules: tuple[tuple[str, ...], ...]
    unit_enabled: bool


class UfwStatus(Fact):
    """`ufw status verbose` plus `ufw show added` (which lists rules whether ufw is active or not)."""

    def command(self) -> str:
        return 'ufw status verbose && ufw show added && echo "unit $(systemctl is-enabled ufw.service 2>&1)"'

    def process(self, lines: list[str]) -> UfwState | None:
        if not lines or not lines[0].startswith("Status: "):
            return None  # ufw missing or failing
        default = None
        rules = []
        unit = False
        for line in lines:
            if line.startswith("Default: "):
                default = line.split()[1]  # "Default: deny (incoming), allow (outgoing), ..."
            elif line.startswith("ufw "):
                rules.append(tuple(shlex.split(line)[1:]))
            elif line.startswith("unit "):
                unit = line == "unit enabled"
        return UfwState(lines[0] == "Status: active", default, tuple(rules), unit)


@dataclass(frozen=True)
class NftRule:
    """One rule of llamafleet's nft table, reduced to what the role writes: port, sources, verdict."""

    proto: str | None
    port: int | None
    family: str | None  # ip / ip6 when the rule matches a source address
    sources: tuple[str, ...]
    verdict: str | None
    comment: str | None


@dataclass(frozen=True)
class NftState:
    """The table's base chains (name, hook, priority, policy) and its rules, in order."""

    chains: tuple[tuple[str, str, int, str], ...]
    rules: tuple[NftRule, ...]


class NftTable(Fact):
    """`nft -j list table inet llamafleet` parsed (None when the table does not exist)."""

    def command(self) -> str:
        return quote("nft -j list table %s %s", *NFT_TABLE)

    def process(self, lines: list[str]) -> NftState | None:
        text = "\n".join(lines).strip()
        if not text.startswith("{"):
            return None
        chains, rules = [], []
        for item in json.loads(text).get("nftables", []):
            if "chain" in item:
                chain = item["chain"]
                chains.append((chain["name"], chain.get("hook", ""), chain.get("prio", 0), chain.get("policy", "")))
            elif "rule" in item:
                rules.append(_nft_rule(item["rule"]))
        return NftState(tuple(chains), tuple(rules))


def _nft_rule(rule: dict) -> NftRule:
    proto = port = family = verdict = None
    sources: tuple[str, ...] = ()
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match is None:
            verdict = next(iter(expr)) if len(expr) == 1 and next(iter(expr)) in ("accept", "drop") else "other"
            continue
        payload = match.get("left", {}).get("payload", {})
        if match.get("op") != "==" or not payload:
            verdict = "other"
        elif payload.get("field") == "dport":
            proto, port = payload.get("protocol"), match.get("right")
        elif payload.get("field") == "saddr":
            family, sources = payload.get("protocol"), _addresses(match.get("right"))
        else:
            verdict = "other"
    return NftRule(proto, port if isinstance(port, int) else None, family, sources, verdict, rule.get("comment"))


def _addresses(right) -> tuple[str, ...]:
    items = right.get("set", []) if isinstance(right, dict) and "set" in right else [right]
    found = []
    for item in items:
        if isinstance(item, dict) and "prefix" in item:
            found.append(f"{item['prefix']['addr']}/{item['prefix']['len']}")
        else:
            found.append(str(item))
    return tuple(found)
