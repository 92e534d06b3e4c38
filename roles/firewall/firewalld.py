"""firewalld: one ipset per port and family (`llamafleet-<port>-<proto>[-v6]`), used by the rich rules of
llamafleet's own policy.

The policy `llamafleet` takes the traffic of every zone to the host (ingress zone ANY, egress HOST),
zones created later included, at priority -1: firewalld runs it before any zone's own rules, so a zone
whose target accepts (trusted, docker's) or a port someone opened to all cannot let anyone else in:

    rule family="ipv4" source ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" accept
    rule family="ipv4" source NOT ipset="llamafleet-50052-tcp" port port="50052" protocol="tcp" drop
    rule family="ipv6" source NOT ipset="llamafleet-50052-tcp-v6" port port="50052" protocol="tcp" drop

(plus the ipv6 accept when the rule has IPv6 sources). The policy is llamafleet's whole: any other rule
or setting in it goes. A rich rule in a zone that names a `llamafleet-` ipset (where versions before the
policy put them) is stale and goes too; any other rule, port, service, ipset or policy is left alone.
SSH is allowed in the zone the rules' sources arrive in (the zone bound to the interface the host routes
them through) and the default zone, before anything else changes.

Permanent and runtime configuration are both changed explicitly, except that firewalld cannot create or
delete an ipset or a policy at runtime: when the runtime needs one, the permanent configuration is
changed and then reloaded (`firewall-cmd --reload`, which also drops others' runtime-only changes; it
happens only when a port is added to or removed from the ruleset, or the policy is made or repaired).
With the daemon stopped, the files are changed with firewall-offline-cmd and the last operation starts
it. firewalld before 0.9 has no policies: the role says so and changes nothing.
"""

from __future__ import annotations

from llamafleet.errors import OperationError
from llamafleet.facts import SystemdUnit
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell
from llamafleet.shell import quote

from . import facts as _facts
from .firewalld_config import POLICY, Config, Diff, Wanted, command, diff, route_address, steps, wanted

SERVICE = "firewalld.service"


# --------------------------------------------------------------------------- reading the facts


class FirewalldFacts:
    """The facts every firewalld operation reads (one object, so each operation lists the same ones)."""

    def __init__(self, ruleset) -> None:
        self.state = _facts.FirewalldState()
        self.zones = {mode: _facts.FirewalldZones(mode) for mode in ("permanent", "runtime")}
        self.ipsets = {mode: _facts.FirewalldIpsets(mode) for mode in ("permanent", "runtime")}
        self.policies = {mode: _facts.FirewalldPolicies(mode) for mode in ("permanent", "runtime")}
        self.routes = _facts.RouteInterfaces(route_address(s) for rule in ruleset.rules for s in rule.sources)

    def all(self) -> list:
        return [self.state, *self.zones.values(), *self.ipsets.values(), self.routes, *self.policies.values()]

    def status(self, facts: Facts):
        status = facts[self.state]
        if status is None or status.default_zone is None:
            raise OperationError("firewalld: firewall-cmd missing or not answering: is firewalld installed?")
        return status

    def configs(self, facts: Facts) -> list[Config]:
        """The permanent side, then (while the daemon runs) the runtime side."""
        running = self.status(facts).running
        sides = [("permanent", "firewall-cmd --permanent" if running else "firewall-offline-cmd")]
        sides += [("runtime", "firewall-cmd")] if running else []
        found = []
        for mode, tool in sides:
            zones, ipsets, policies = (facts[fact[mode]] for fact in (self.zones, self.ipsets, self.policies))
            if zones is None or ipsets is None:
                raise OperationError(f"firewalld: could not read the {mode} configuration ({tool} failed)")
            if policies is None:
                raise OperationError(
                    f"firewalld: {tool} --list-all-policies failed: llamafleet needs firewalld 0.9 or later"
                )
            found.append(Config(mode, tool, zones, ipsets, policies))
        return found

    def wanted(self, ruleset, facts: Facts) -> Wanted:
        status, configs = self.status(facts), self.configs(facts)
        bound = configs[-1].zones  # the bindings in force: runtime while running
        if status.default_zone not in bound:
            raise OperationError(f"firewalld: default zone {status.default_zone!r} is not among the zones listed")
        return wanted(ruleset, facts[self.routes], bound, status.default_zone)


# --------------------------------------------------------------------------- the operations


def ssh_open(zone, port: int) -> bool:
    """Whether a zone lets anyone reach the SSH port (its target, the port, or the `ssh` service for 22)."""
    return zone.target == "ACCEPT" or f"{port}/tcp" in zone.ports or (port == 22 and "ssh" in zone.services)


def ssh_allowed(ruleset) -> Operation:
    """SSH is allowed in every zone the rules' sources arrive in and the default zone, before any other change."""
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
                    found.append(command(config.tool, f"--zone={zone}", opening))
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
            where = f"policy {POLICY} (every zone)" if want.rich_rules else "no policy"
            return NoChange(
                f"{len(want.ipsets)} llamafleet ipset(s), {len(want.rich_rules)} rich rule(s) in {where}, none stale"
            )
        return Change(tuple(found), "; ".join(why))

    return Operation("firewalld llamafleet policy, ipsets and rich rules", read.all(), planner)


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


# Our ipsets' files, our policy's file, or a zone file that uses one of our ipsets: found without starting firewall-cmd
# (and without starting anything on a host with no firewalld folder).
TRACE = quote(
    "[ -d /etc/firewalld ] && { ls /etc/firewalld/ipsets/%s*.xml >/dev/null 2>&1 || test -e %s"
    " || grep -qs -e %s /etc/firewalld/zones/*.xml; }",
    _facts.FIREWALLD_PREFIX,
    f"/etc/firewalld/policies/{POLICY}.xml",
    f'ipset="{_facts.FIREWALLD_PREFIX}',
)
NOTHING = Wanted({}, frozenset(), ())


def leftovers() -> list:
    """The facts that show llamafleet's saved firewalld configuration, read only when a file of it exists."""
    return [
        _facts.Traced(TRACE, _facts.FirewalldState()),
        _facts.Traced(TRACE, _facts.FirewalldZones("permanent")),
        _facts.Traced(TRACE, _facts.FirewalldIpsets("permanent")),
        _facts.Traced(TRACE, _facts.FirewalldPolicies("permanent")),
    ]


def leftover_diff(found: list, facts: Facts) -> Diff | None:
    """What of llamafleet's is in firewalld's saved configuration (None: nothing, or firewalld gone)."""
    status, zones, ipsets, policies = (facts[fact] for fact in found)
    if status is None or zones is None or ipsets is None:
        return None
    tool = "firewall-cmd --permanent" if status.running else "firewall-offline-cmd"
    change = diff(Config("permanent", tool, zones, ipsets, policies or {}), NOTHING)
    return change if change.summary() else None


def leftover_summary(change: Diff) -> str:
    """What of llamafleet's a leftover diff found, for a warning: `policy llamafleet, 2 ipsets, 3 rich rules`."""
    parts = [f"policy {POLICY}"] if change.policy_deleted else []
    parts.append(f"{len(change.deleted)} ipsets")
    return ", ".join(parts + ([f"{len(change.rules_removed)} rich rules"] if change.rules_removed else []))


def removed() -> Operation:
    """firewalld holds no llamafleet ipset, policy or rich rule (another frontend is managed); the rest stays."""
    found = leftovers()

    def planner(facts: Facts):
        change = leftover_diff(found, facts)
        if change is None:
            return NoChange("firewalld holds no llamafleet ipset, policy or rich rule")
        if facts[found[0]].running:  # still filtering: taking our accepts out would close the ports
            raise OperationError(
                "firewalld is running and holds llamafleet rules: stop it (systemctl disable --now firewalld) first"
            )
        return Change(tuple(steps("firewall-offline-cmd", change, NOTHING)), f"stopped firewalld: {change.summary()}")

    return Operation("firewalld holds no llamafleet ipset, policy or rich rule", found, planner)


def firewalld_rules(ruleset) -> list[Operation]:
    """Every operation that makes `ruleset` true with firewalld, in order."""
    return [ssh_allowed(ruleset), rules(ruleset), running_and_enabled()]
