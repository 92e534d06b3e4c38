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
    interface: str | None = None  # iifname the rule matches


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
    proto = port = family = verdict = interface = None
    sources: tuple[str, ...] = ()
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match is None:
            verdict = next(iter(expr)) if len(expr) == 1 and next(iter(expr)) in ("accept", "drop") else "other"
            continue
        payload = match.get("left", {}).get("payload", {})
        meta = match.get("left", {}).get("meta", {})
        if match.get("op") == "==" and meta.get("key") == "iifname" and isinstance(match.get("right"), str):
            interface = match["right"]
        elif match.get("op") != "==" or not payload:
            verdict = "other"
        elif payload.get("field") == "dport":
            proto, port = payload.get("protocol"), match.get("right")
        elif payload.get("field") == "saddr":
            family, sources = payload.get("protocol"), _addresses(match.get("right"))
        else:
            verdict = "other"
    port = port if isinstance(port, int) else None
    return NftRule(proto, port, family, sources, verdict, rule.get("comment"), interface)


def _addresses(right) -> tuple[str, ...]:
    items = right.get("set", []) if isinstance(right, dict) and "set" in right else [right]
    found = []
    for item in items:
        if isinstance(item, dict) and "prefix" in item:
            found.append(f"{item['prefix']['addr']}/{item['prefix']['len']}")
        else:
            found.append(str(item))
    return tuple(found)


class Traced(Fact):
    """Another fact, read only when a cheap shell `test` finds a trace of llamafleet (None otherwise).

    Reading ufw or firewalld costs a Python start-up each; a frontend llamafleet does not manage is
    looked at this way on every run, so it costs a grep unless something of ours is there.
    """

    def __init__(self, test: str, fact: Fact) -> None:
        super().__init__(test, fact.key)
        self.fact = fact

    def command(self) -> str:
        return f"if {self.args[0]}; then\n{self.fact.command()}\nfi"

    def process(self, lines: list[str]):
        return self.fact.process(lines) if lines else None


class DebConffile(Fact):
    """The md5 dpkg recorded for a package's configuration file as shipped (None: not a conffile, or no dpkg)."""

    def __init__(self, package: str, path: str) -> None:
        super().__init__(package, path)

    def command(self) -> str:
        return quote("dpkg-query -W -f='${Conffiles}\\n' -- %s", self.args[0])

    def process(self, lines: list[str]) -> str | None:
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == self.args[1]:
                return words[1]
        return None


# --------------------------------------------------------------------------- firewalld

FIREWALLD_PREFIX = "llamafleet-"  # names of llamafleet's ipsets; rich rules are ours when they use one
# The permanent configuration is read through the daemon when it answers (it holds what it will
# write), else from the files with firewall-offline-cmd; the runtime one only through the daemon.
# Each firewall-cmd call costs about 0.3 s of Python start-up, so none is spent on asking --state first.
_TOOLS = {"permanent": ("firewall-cmd --permanent", "firewall-offline-cmd"), "runtime": ("firewall-cmd", "false")}


def _first_answering(side: str, query: str) -> str:
    """Shell that runs `query` with the daemon's tool, or the fallback; `$fw` is then the one that answered."""
    daemon, fallback = _TOOLS[side]
    return f'fw="{daemon}"; answer=$($fw {query}) || {{ fw={fallback}; answer=$($fw {query}); }}'


@dataclass(frozen=True)
class FirewalldStatus:
    """Whether the daemon answers, and the zone that takes interfaces bound to none."""

    running: bool
    default_zone: str | None


class FirewalldState(Fact):
    """Whether the daemon answers (as `--state` says) and the default zone (from the files if it does not)."""

    def command(self) -> str:
        # The daemon answering --get-default-zone is what --state would say: one call instead of two.
        return (
            "if command -v firewall-cmd >/dev/null; then\n"
            'if zone=$(firewall-cmd --get-default-zone); then echo "state running"; '
            'else echo "state not running"; zone=$(firewall-offline-cmd --get-default-zone); fi\n'
            'echo "default-zone $zone"\nfi'
        )

    def process(self, lines: list[str]) -> FirewalldStatus | None:
        values = dict(line.split(" ", 1) for line in lines if " " in line)
        if "state" not in values:
            return None  # firewalld not installed
        return FirewalldStatus(values["state"] == "running", values.get("default-zone") or None)


@dataclass(frozen=True)
class FirewalldZone:
    """What of one zone the role reads: its target, bound interfaces, open services and ports, rich rules."""

    target: str
    interfaces: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    rich_rules: tuple[str, ...] = ()


class FirewalldZones(Fact):
    """`firewall-cmd [--permanent] --list-all-zones`: every zone at once, so no fact depends on another's answer.

    `mode` is "permanent" or "runtime"; the runtime one is None while the daemon is stopped.
    """

    QUERY = "--list-all-zones"

    def __init__(self, mode: str) -> None:
        super().__init__(mode)

    def command(self) -> str:
        return _first_answering(self.args[0], self.QUERY) + ' && echo "$answer"'

    def process(self, lines: list[str]) -> dict[str, FirewalldZone] | None:
        listed = _listing(lines)
        return {name: _zone(values) for name, values in listed.items()} if listed else None


def _listing(lines: list[str]) -> dict[str, dict]:
    """`--list-all-zones` / `--list-all-policies` output: name -> {setting: words, "rich rules": [rule, ...]}."""
    found: dict[str, dict] = {}
    current: dict | None = None
    for line in lines:
        if line and not line[0].isspace():  # "public" or "public (active)"
            current = found.setdefault(line.split()[0], {"rich rules": []})
        elif current is not None and line.startswith("\t"):  # rich rules follow their header, one a line
            current["rich rules"].append(line.strip())
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(":")
            current[key] = value.split()
    return found


def _zone(values: dict) -> FirewalldZone:
    return FirewalldZone(
        target=" ".join(values.get("target", [])),
        interfaces=tuple(values.get("interfaces", [])),
        services=tuple(values.get("services", [])),
        ports=tuple(values.get("ports", [])),
        rich_rules=tuple(values["rich rules"]),
    )


@dataclass(frozen=True)
class FirewalldPolicy:
    """One policy: its priority, target, ingress and egress zones, rich rules, and any other setting it has."""

    priority: int | None
    target: str
    ingress: tuple[str, ...] = ()
    egress: tuple[str, ...] = ()
    rich_rules: tuple[str, ...] = ()
    others: tuple[str, ...] = ()  # "ports: 50052/tcp", "masquerade: yes"...: whatever else is set


_POLICY_SETTINGS = ("priority", "target", "ingress-zones", "egress-zones", "rich rules")


class FirewalldPolicies(FirewalldZones):
    """`firewall-cmd [--permanent] --list-all-policies` (firewalld 0.9 and later); `mode` as for zones."""

    QUERY = "--list-all-policies"

    def command(self) -> str:
        return _first_answering(self.args[0], self.QUERY) + ' && echo policies && echo "$answer"'

    def process(self, lines: list[str]) -> dict[str, FirewalldPolicy] | None:
        if not lines or lines[0] != "policies":
            return None  # the tool failed, (runtime) the daemon is stopped, or firewalld predates policies
        return {name: _policy(values) for name, values in _listing(lines[1:]).items()}


def _policy(values: dict) -> FirewalldPolicy:
    priority = " ".join(values.get("priority", []))
    others = (f"{key}: {' '.join(words)}" for key, words in values.items() if key not in _POLICY_SETTINGS)
    return FirewalldPolicy(
        priority=int(priority) if priority.lstrip("-").isdigit() else None,
        target=" ".join(values.get("target", [])),
        ingress=tuple(values.get("ingress-zones", [])),
        egress=tuple(values.get("egress-zones", [])),
        rich_rules=tuple(values["rich rules"]),
        others=tuple(sorted(o for o in others if not o.endswith((": ", ": no")))),
    )


@dataclass(frozen=True)
class FirewalldIpset:
    """One ipset: its type, its options (`family=inet6`...) and its entries, as firewalld lists them."""

    type: str
    options: tuple[str, ...]
    entries: tuple[str, ...]


class FirewalldIpsets(Fact):
    """`--get-ipsets` then `--info-ipset` of each llamafleet ipset (others' are not read); `mode` as for zones."""

    def __init__(self, mode: str) -> None:
        super().__init__(mode)

    def command(self) -> str:
        each = quote('case "$set" in %s*) $fw --info-ipset="$set";; esac', FIREWALLD_PREFIX)
        return (
            _first_answering(self.args[0], "--get-ipsets") + f" && echo ipsets && for set in $answer; do {each}; done"
        )

    def process(self, lines: list[str]) -> dict[str, FirewalldIpset] | None:
        if not lines or lines[0] != "ipsets":
            return None  # the tool failed, or (runtime) the daemon is stopped
        sets: dict[str, dict] = {}
        current: dict = {}
        for line in lines[1:]:
            if line and not line[0].isspace():
                current = sets.setdefault(line.strip(), {})
            else:
                key, _, value = line.strip().partition(":")
                current[key] = tuple(value.split())
        return {
            name: FirewalldIpset(" ".join(v.get("type", ())), v.get("options", ()), v.get("entries", ()))
            for name, v in sets.items()
        }


class RouteInterfaces(Fact):
    """The interface the host routes each address through (`ip -o route get`): where that source's packets arrive."""

    def __init__(self, addresses) -> None:
        super().__init__(tuple(sorted(set(addresses))))

    def command(self) -> str:
        listed = " ".join(quote("%s", address) for address in self.args[0])
        return f'for address in {listed}; do echo "$address $(ip -o route get "$address" 2>/dev/null)"; done'

    def process(self, lines: list[str]) -> dict[str, str]:
        found = {}
        for line in lines:
            words = line.split()
            if "dev" in words[1:-1]:
                found[words[0]] = words[words.index("dev", 1) + 1]
        return found
