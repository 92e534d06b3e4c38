"""firewalld: one ipset per port and family (`llamafleet-<port>-<proto>[-v6]`) and rich rules that use them.

For each rule of the ruleset, in the zone its sources arrive in (the zone bound to the interface the
host routes them through, else the default zone):

    rule family="ipv4" source ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" accept
    rule family="ipv4" source NOT ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" drop
    rule family="ipv6" source NOT ipset="llamafleet-50052-tcp-v6" port port="50052" protocol="tcp" drop

(plus the ipv6 accept when the rule has IPv6 sources). The drops are explicit although the default
`public` zone already rejects unlisted ports: a zone whose target accepts (trusted), or a port
someone opened to all, would otherwise let everyone in. firewalld runs a zone's drop rules before
its accept rules and services, so the NOT-ipset form is what keeps the allowed sources in. Every
rich rule naming a `llamafleet-` ipset is ours; any other rule, port, service or ipset is left alone.

Permanent and runtime configuration are both changed explicitly, except that firewalld cannot
create or delete an ipset at runtime: when the runtime needs one, the permanent configuration is
changed and then reloaded (`firewall-cmd --reload`, which also drops others' runtime-only changes;
it happens only when a port is added to or removed from the ruleset). With the daemon stopped, the
files are changed with firewall-offline-cmd and the last operation starts it.

Not handled: a zone bound to a source address (`--add-source`) takes that source's packets before
its interface's zone does; such bindings are not followed, the rules stay in the interface's zone.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from llamafleet.errors import OperationError
from llamafleet.facts import SystemdUnit
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell
from llamafleet.shell import quote

from . import facts as _facts

SERVICE = "firewalld.service"
IPSET_TYPE = "hash:net"
FAMILIES = {"ipv4": ("", "inet"), "ipv6": ("-v6", "inet6")}  # rich rule family -> (name suffix, ipset family)
_OUR_IPSET = re.compile(r'ipset="' + re.escape(_facts.FIREWALLD_PREFIX))


# --------------------------------------------------------------------------- what the ruleset asks for


@dataclass(frozen=True)
class Wanted:
    """llamafleet's whole firewalld configuration for one ruleset: its ipsets and its (zone, rich rule) pairs."""

    ipsets: dict[str, tuple[str, tuple[str, ...]]]  # name -> (ipset family, entries)
    rich_rules: frozenset[tuple[str, str]]
    zones: tuple[str, ...]  # where the rules go, and the default zone: SSH must be allowed in each


def ipset_name(rule, family: str) -> str:
    return f"{_facts.FIREWALLD_PREFIX}{rule.port}-{rule.proto}{FAMILIES[family][0]}"


def entries(sources: tuple[str, ...]) -> tuple[str, ...]:
    """Sources merged so none overlaps another (firewalld refuses, or silently skips, overlapping entries)."""
    networks = ipaddress.collapse_addresses(ipaddress.ip_network(s) for s in sources)
    return tuple(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in networks)


def rich_rules(rule) -> list[str]:
    """The rule's rich rules in the exact text `--list-rich-rules` prints them with."""
    texts = []
    for family, sources in (("ipv4", rule.ipv4), ("ipv6", rule.ipv6)):
        name, port = ipset_name(rule, family), f'port port="{rule.port}" protocol="{rule.proto}"'
        if sources:
            texts.append(f'rule family="{family}" source ipset="{name}" {port} accept')
        texts.append(f'rule family="{family}" source NOT ipset="{name}" {port} drop')
    return texts


def ours(rich_rule: str) -> bool:
    """A rich rule llamafleet wrote: it names one of llamafleet's ipsets."""
    return bool(_OUR_IPSET.search(rich_rule))


def zone_of(interface: str | None, zones: dict, default_zone: str) -> str:
    """The zone firewalld applies to packets arriving on `interface` (bound zone, else the default one)."""
    for name, zone in zones.items():
        if interface is not None and interface in zone.interfaces:
            return name
    return default_zone


def rule_zones(rule, routes: dict[str, str], zones: dict, default_zone: str) -> set[str]:
    """Every zone the rule's sources arrive in (loopback is always accepted by firewalld, so not counted)."""
    interfaces = {routes.get(route_address(s)) for s in rule.sources} - {"lo"}
    return {zone_of(interface, zones, default_zone) for interface in interfaces} or {default_zone}


def route_address(source: str) -> str:
    return str(ipaddress.ip_network(source).network_address)


def wanted(ruleset, routes: dict[str, str], zones: dict, default_zone: str) -> Wanted:
    ipsets, texts, used = {}, set(), {default_zone}
    for rule in ruleset.rules:
        for family, sources in (("ipv4", rule.ipv4), ("ipv6", rule.ipv6)):
            ipsets[ipset_name(rule, family)] = (FAMILIES[family][1], entries(sources))
        for zone in rule_zones(rule, routes, zones, default_zone):
            used.add(zone)
            texts.update((zone, text) for text in rich_rules(rule))
    return Wanted(ipsets, frozenset(texts), tuple(sorted(used)))


# --------------------------------------------------------------------------- reading the facts


@dataclass(frozen=True)
class _Config:
    """One side of firewalld (permanent or runtime) as the facts show it, and the tool that changes it."""

    side: str  # "permanent" or "runtime"
    tool: str  # "firewall-cmd --permanent", "firewall-offline-cmd" (daemon stopped) or "firewall-cmd"
    zones: dict
    ipsets: dict


class FirewalldFacts:
    """The facts every firewalld operation reads (one object, so each operation lists the same ones)."""

    def __init__(self, ruleset) -> None:
        self.state = _facts.FirewalldState()
        self.zones = {mode: _facts.FirewalldZones(mode) for mode in ("permanent", "runtime")}
        self.ipsets = {mode: _facts.FirewalldIpsets(mode) for mode in ("permanent", "runtime")}
        self.routes = _facts.RouteInterfaces(route_address(s) for rule in ruleset.rules for s in rule.sources)

    def all(self) -> list:
        return [self.state, *self.zones.values(), *self.ipsets.values(), self.routes]

    def status(self, facts: Facts):
        status = facts[self.state]
        if status is None or status.default_zone is None:
            raise OperationError("firewalld: firewall-cmd missing or not answering: is firewalld installed?")
        return status

    def configs(self, facts: Facts) -> list[_Config]:
        """The permanent side, then (while the daemon runs) the runtime side."""
        running = self.status(facts).running
        sides = [("permanent", "firewall-cmd --permanent" if running else "firewall-offline-cmd")]
        sides += [("runtime", "firewall-cmd")] if running else []
        found = []
        for mode, tool in sides:
            zones, ipsets = facts[self.zones[mode]], facts[self.ipsets[mode]]
            if zones is None or ipsets is None:
                raise OperationError(f"firewalld: could not read the {mode} configuration ({tool} failed)")
            found.append(_Config(mode, tool, zones, ipsets))
        return found

    def wanted(self, ruleset, facts: Facts) -> Wanted:
        status, configs = self.status(facts), self.configs(facts)
        bound = configs[-1].zones  # the bindings in force: runtime while running
        if status.default_zone not in bound:
            raise OperationError(f"firewalld: default zone {status.default_zone!r} is not among the zones listed")
        return wanted(ruleset, facts[self.routes], bound, status.default_zone)


def _command(tool: str, *args: str) -> Shell:
    return Shell(" ".join([tool, *(quote("%s", arg) for arg in args)]))


# --------------------------------------------------------------------------- from facts to commands


@dataclass
class _Diff:
    """What separates one side of firewalld from the wanted configuration."""

    deleted: list[str]  # ipsets that are stale, or of the wrong kind (then created again)
    created: list[str]
    entries_removed: dict[str, list[str]]
    entries_added: dict[str, list[str]]
    rules_removed: list[tuple[str, str]]
    rules_added: list[tuple[str, str]]

    @property
    def structural(self) -> bool:
        """Whether ipsets come or go, which firewalld does only in the permanent configuration."""
        return bool(self.deleted or self.created)

    def summary(self) -> str:
        counts = [
            (len(self.created), "ipset to create", "ipsets to create"),
            (len(self.deleted), "ipset to delete", "ipsets to delete"),
            (sum(map(len, self.entries_added.values())), "entry to add", "entries to add"),
            (sum(map(len, self.entries_removed.values())), "stale entry", "stale entries"),
            (len(self.rules_added), "rich rule to add", "rich rules to add"),
            (len(self.rules_removed), "stale rich rule", "stale rich rules"),
        ]
        return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts if n)


def diff(config: _Config, want: Wanted) -> _Diff:
    wrong_kind = [
        name
        for name, (family, _) in want.ipsets.items()
        if name in config.ipsets and not _is_kind(config.ipsets[name], family)
    ]
    deleted = sorted(set(config.ipsets) - set(want.ipsets)) + wrong_kind
    created = sorted(name for name in want.ipsets if name not in config.ipsets or name in wrong_kind)
    removed, added = {}, {}
    for name, (_, wanted_entries) in sorted(want.ipsets.items()):
        present = () if name in created else config.ipsets[name].entries
        removed[name] = [e for e in present if e not in wanted_entries]
        added[name] = [e for e in wanted_entries if e not in present]
    present_rules = {(zone, text) for zone, z in config.zones.items() for text in z.rich_rules if ours(text)}
    return _Diff(
        deleted,
        created,
        {name: values for name, values in removed.items() if values},
        {name: values for name, values in added.items() if values},
        sorted(present_rules - want.rich_rules),
        sorted(want.rich_rules - present_rules),
    )


def _is_kind(ipset, family: str) -> bool:
    """Our ipset as created: hash:net of the family, no other option (a timeout would let entries expire)."""
    options = dict(option.partition("=")[::2] for option in ipset.options)
    return ipset.type == IPSET_TYPE and {"family": "inet", **options} == {"family": family}


def steps(tool: str, change: _Diff, want: Wanted) -> list[Shell]:
    """Commands in a safe order: rules that use an ipset go before it goes, and come after it exists.

    Stale entries go before new ones: firewalld refuses an entry that overlaps one still there.
    """
    found = [
        _each(tool, f"--zone={zone}", "--remove-rich-rule", texts) for zone, texts in _by_zone(change.rules_removed)
    ]
    found += [_command(tool, f"--delete-ipset={name}") for name in change.deleted]
    for name in change.created:
        family_option = [] if want.ipsets[name][0] == "inet" else ["--option=family=inet6"]
        found.append(_command(tool, f"--new-ipset={name}", f"--type={IPSET_TYPE}", *family_option))
    found += [
        _each(tool, f"--ipset={name}", "--remove-entry", values) for name, values in change.entries_removed.items()
    ]
    found += [_each(tool, f"--ipset={name}", "--add-entry", values) for name, values in change.entries_added.items()]
    found += [_each(tool, f"--zone={zone}", "--add-rich-rule", texts) for zone, texts in _by_zone(change.rules_added)]
    return found


def _each(tool: str, target: str, option: str, values: list[str]) -> Shell:
    """One command for many values: firewall-cmd takes an option repeated (but not adds with removes)."""
    return _command(tool, target, *(f"{option}={value}" for value in values))


def _by_zone(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    zones: dict[str, list[str]] = {}
    for zone, text in pairs:
        zones.setdefault(zone, []).append(text)
    return sorted(zones.items())


# --------------------------------------------------------------------------- the operations


def ssh_open(zone, port: int) -> bool:
    """Whether a zone lets anyone reach the SSH port (its target, the port, or the `ssh` service for 22)."""
    return zone.target == "ACCEPT" or f"{port}/tcp" in zone.ports or (port == 22 and "ssh" in zone.services)


def ssh_allowed(ruleset) -> Operation:
    """SSH is allowed in every zone llamafleet's rules use and the default zone, before any other change."""
    read = FirewalldFacts(ruleset)
    opening = "--add-service=ssh" if ruleset.ssh_port == 22 else f"--add-port={ruleset.ssh_port}/tcp"

    def planner(facts: Facts):
        zones = read.wanted(ruleset, facts).zones
        found = []
        for config in read.configs(facts):
            for zone in zones:
                if zone not in config.zones:
                    raise OperationError(f"firewalld: zone {zone!r} missing from {config.tool} --list-all-zones")
                if not ssh_open(config.zones[zone], ruleset.ssh_port):
                    found.append(_command(config.tool, f"--zone={zone}", opening))
        if not found:
            return NoChange(f"SSH ({ruleset.ssh_port}/tcp) allowed in zone(s) {', '.join(zones)}")
        return Change(tuple(found), f"SSH ({ruleset.ssh_port}/tcp) not allowed in {len(found)} zone configuration(s)")

    return Operation("firewalld SSH allowed", read.all(), planner)


def rules(ruleset) -> Operation:
    """firewalld holds exactly `ruleset`'s llamafleet ipsets and rich rules, permanent and runtime."""
    read = FirewalldFacts(ruleset)

    def planner(facts: Facts):
        want = read.wanted(ruleset, facts)
        found, why = [], []
        for config in read.configs(facts):  # permanent first: a reload must find it complete
            change = diff(config, want)
            if not change.summary():
                continue
            if config.side == "runtime" and change.structural:
                found.append(Shell("firewall-cmd --reload"))
                why.append(f"runtime: {change.summary()} (by a reload)")
            else:
                found += steps(config.tool, change, want)
                why.append(f"{config.side}: {change.summary()}")
        if not found:
            return NoChange(f"{len(want.ipsets)} llamafleet ipset(s), {len(want.rich_rules)} rich rule(s), none stale")
        return Change(tuple(found), "; ".join(why))

    return Operation("firewalld llamafleet ipsets and rich rules", read.all(), planner)


def running_and_enabled() -> Operation:
    """firewalld answers now and starts at boot (last: its permanent configuration is complete by then)."""
    unit, state = SystemdUnit(SERVICE), _facts.FirewalldState()

    def planner(facts: Facts):
        unit_file = facts[unit].get("UnitFileState")
        if unit_file == "masked":
            raise OperationError(f"firewalld: {SERVICE} is masked; unmask it or choose another frontend")
        running = facts[state] is not None and facts[state].running
        found = [] if unit_file == "enabled" else [Shell(quote("systemctl enable %s", SERVICE))]
        found += [] if running else [Shell(quote("systemctl start %s", SERVICE))]
        if not found:
            return NoChange(f"firewalld running, {SERVICE} enabled")
        return Change(tuple(found), "firewalld not running" if not running else f"{SERVICE} {unit_file or 'not found'}")

    return Operation("firewalld running and enabled", [unit, state], planner)


# Our ipsets' files, or a zone file that uses one: found without starting firewall-cmd.
TRACE = quote(
    "ls /etc/firewalld/ipsets/%s*.xml >/dev/null 2>&1 || grep -qs -e %s /etc/firewalld/zones/*.xml",
    _facts.FIREWALLD_PREFIX,
    f'ipset="{_facts.FIREWALLD_PREFIX}',
)
NOTHING = Wanted({}, frozenset(), ())


def leftovers() -> list:
    """The facts that show llamafleet's saved firewalld configuration, read only when a file of it exists."""
    return [
        _facts.Traced(TRACE, _facts.FirewalldState()),
        _facts.Traced(TRACE, _facts.FirewalldZones("permanent")),
        _facts.Traced(TRACE, _facts.FirewalldIpsets("permanent")),
    ]


def leftover_diff(found: list, facts: Facts) -> _Diff | None:
    """What of llamafleet's is in firewalld's saved configuration (None: nothing, or firewalld gone)."""
    status, zones, ipsets = (facts[fact] for fact in found)
    if status is None or zones is None or ipsets is None:
        return None
    tool = "firewall-cmd --permanent" if status.running else "firewall-offline-cmd"
    change = diff(_Config("permanent", tool, zones, ipsets), NOTHING)
    return change if change.summary() else None


def removed() -> Operation:
    """firewalld holds no llamafleet ipset or rich rule (another frontend is managed); the rest stays."""
    found = leftovers()

    def planner(facts: Facts):
        change = leftover_diff(found, facts)
        if change is None:
            return NoChange("firewalld holds no llamafleet ipset or rich rule")
        if facts[found[0]].running:  # still filtering: taking our accepts out would close the ports
            raise OperationError(
                "firewalld is running and holds llamafleet rules: stop it (systemctl disable --now firewalld) first"
            )
        return Change(tuple(steps("firewall-offline-cmd", change, NOTHING)), f"stopped firewalld: {change.summary()}")

    return Operation("firewalld holds no llamafleet ipset or rich rule", found, planner)


def firewalld_rules(ruleset) -> list[Operation]:
    """Every operation that makes `ruleset` true with firewalld, in order."""
    return [ssh_allowed(ruleset), rules(ruleset), running_and_enabled()]
