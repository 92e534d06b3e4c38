"""firewalld as llamafleet wants it for one ruleset (ipsets, the policy and its rich rules), and the commands
that take one side of firewalld (permanent or runtime) there; see firewalld.py for the design."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from llamafleet.operations import Shell
from llamafleet.shell import quote

from . import facts as _facts

IPSET_TYPE = "hash:net"
FAMILIES = {"ipv4": ("", "inet"), "ipv6": ("-v6", "inet6")}  # rich rule family -> (name suffix, ipset family)
POLICY = "llamafleet"
POLICY_PRIORITY = -1  # negative: before every zone's rules; firewalld's own default for a new policy
POLICY_ZONES = (("ingress", "ANY"), ("egress", "HOST"))  # from every zone, present and future, to the host
_OUR_IPSET = re.compile(r'ipset="' + re.escape(_facts.FIREWALLD_PREFIX))


# --------------------------------------------------------------------------- what the ruleset asks for


@dataclass(frozen=True)
class Wanted:
    """llamafleet's whole firewalld configuration for one ruleset: its ipsets and its policy's rich rules."""

    ipsets: dict[str, tuple[str, tuple[str, ...]]]  # name -> (ipset family, entries)
    rich_rules: frozenset[str]  # in the policy, which exists exactly when it has rules
    zones: tuple[str, ...]  # where the rules' sources arrive, and the default zone: SSH must be allowed in each


def ipset_name(rule, family: str) -> str:
    return f"{_facts.FIREWALLD_PREFIX}{rule.port}-{rule.proto}{FAMILIES[family][0]}"


def entries(sources: tuple[str, ...]) -> tuple[str, ...]:
    """Sources merged so none overlaps another (firewalld refuses, or silently skips, overlapping entries)."""
    networks = ipaddress.collapse_addresses(ipaddress.ip_network(s) for s in sources)
    return tuple(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in networks)


def rich_rules(rule) -> list[str]:
    """The rule's rich rules in the exact text `--list-all-policies` prints them with."""
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
        used.update(rule_zones(rule, routes, zones, default_zone))
        texts.update(rich_rules(rule))
    return Wanted(ipsets, frozenset(texts), tuple(sorted(used)))


def as_made(policy) -> bool:
    """Whether a policy named llamafleet is as the role makes it: from ANY zone to HOST, before zones, nothing else.

    Its rich rules are compared on their own (a missing or stray one is added or removed, not the policy).
    """
    return (
        policy.priority == POLICY_PRIORITY
        and policy.target == "CONTINUE"
        and (policy.ingress, policy.egress) == tuple((zone,) for _, zone in POLICY_ZONES)
        and not policy.others
    )


# --------------------------------------------------------------------------- one side of firewalld


@dataclass(frozen=True)
class Config:
    """One side of firewalld (permanent or runtime) as the facts show it, and the tool that changes it."""

    side: str  # "permanent" or "runtime"
    tool: str  # "firewall-cmd --permanent", "firewall-offline-cmd" (daemon stopped) or "firewall-cmd"
    zones: dict
    ipsets: dict
    policies: dict


def command(tool: str, *args: str) -> Shell:
    """`tool ARGS...`, each argument quoted."""
    return Shell(" ".join([tool, *(quote("%s", arg) for arg in args)]))


# --------------------------------------------------------------------------- from facts to commands


@dataclass
class Diff:
    """What separates one side of firewalld from the wanted configuration."""

    deleted: list[str]  # ipsets that are stale, or of the wrong kind (then created again)
    created: list[str]
    entries_removed: dict[str, list[str]]
    entries_added: dict[str, list[str]]
    rules_removed: list[tuple[str, str]]  # (where: "--zone=Z" or "--policy=llamafleet", rich rule)
    rules_added: list[str]  # into the policy
    policy_deleted: bool = False  # stale, or not as made (then created again)
    policy_created: bool = False

    @property
    def structural(self) -> bool:
        """Whether ipsets or the policy come or go, which firewalld does only in the permanent configuration."""
        return bool(self.deleted or self.created or self.policy_deleted or self.policy_created)

    def summary(self) -> str:
        counts = [
            (len(self.created), "ipset to create", "ipsets to create"),
            (len(self.deleted), "ipset to delete", "ipsets to delete"),
            (sum(map(len, self.entries_added.values())), "entry to add", "entries to add"),
            (sum(map(len, self.entries_removed.values())), "stale entry", "stale entries"),
            (len(self.rules_added), "rich rule to add", "rich rules to add"),
            (len(self.rules_removed), "stale rich rule", "stale rich rules"),
        ]
        policy = {
            (True, True): ["policy to remake"],
            (False, True): ["policy to create"],
            (True, False): ["policy to delete"],
        }
        found = policy.get((self.policy_deleted, self.policy_created), [])
        return ", ".join(found + [f"{n} {one if n == 1 else many}" for n, one, many in counts if n])


def diff(config: Config, want: Wanted) -> Diff:
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
    policy = config.policies.get(POLICY)
    policy_deleted = policy is not None and not (want.rich_rules and as_made(policy))
    in_policy = set() if policy is None or policy_deleted else set(policy.rich_rules)
    in_zones = sorted(
        (f"--zone={zone}", text) for zone, z in config.zones.items() for text in z.rich_rules if ours(text)
    )
    return Diff(
        deleted,
        created,
        {name: values for name, values in removed.items() if values},
        {name: values for name, values in added.items() if values},
        in_zones + [(f"--policy={POLICY}", text) for text in sorted(in_policy - want.rich_rules)],
        sorted(want.rich_rules - in_policy),
        policy_deleted,
        bool(want.rich_rules) and (policy is None or policy_deleted),
    )


def _is_kind(ipset, family: str) -> bool:
    """Our ipset as created: hash:net of the family, no other option (a timeout would let entries expire)."""
    options = dict(option.partition("=")[::2] for option in ipset.options)
    return ipset.type == IPSET_TYPE and {"family": "inet", **options} == {"family": family}


def steps(tool: str, change: Diff, want: Wanted) -> list[Shell]:
    """Commands in a safe order: rules that use an ipset go before it goes, and come after it exists.

    Stale entries go before new ones: firewalld refuses an entry that overlaps one still there.
    """
    found = [_each(tool, where, "--remove-rich-rule", texts) for where, texts in _by_place(change.rules_removed)]
    found += [command(tool, f"--delete-policy={POLICY}")] if change.policy_deleted else []
    found += [command(tool, f"--delete-ipset={name}") for name in change.deleted]
    for name in change.created:
        family_option = [] if want.ipsets[name][0] == "inet" else ["--option=family=inet6"]
        found.append(command(tool, f"--new-ipset={name}", f"--type={IPSET_TYPE}", *family_option))
    found += [
        _each(tool, f"--ipset={name}", "--remove-entry", values) for name, values in change.entries_removed.items()
    ]
    found += [_each(tool, f"--ipset={name}", "--add-entry", values) for name, values in change.entries_added.items()]
    found += policy_made(tool) if change.policy_created else []
    if change.rules_added:
        found.append(_each(tool, f"--policy={POLICY}", "--add-rich-rule", change.rules_added))
    return found


def policy_made(tool: str) -> list[Shell]:
    """The policy created as `as_made` checks it (firewall-cmd takes one zone option per call)."""
    found = [
        command(tool, f"--new-policy={POLICY}"),
        command(tool, f"--policy={POLICY}", f"--set-priority={POLICY_PRIORITY}"),
    ]
    return found + [command(tool, f"--policy={POLICY}", f"--add-{side}-zone={zone}") for side, zone in POLICY_ZONES]


def _each(tool: str, target: str, option: str, values: list[str]) -> Shell:
    """One command for many values: firewall-cmd takes an option repeated (but not adds with removes)."""
    return command(tool, target, *(f"{option}={value}" for value in values))


def _by_place(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(where, rule) pairs grouped by where, in the order each place first appears."""
    places: dict[str, list[str]] = {}
    for where, text in pairs:
        places.setdefault(where, []).append(text)
    return list(places.items())
