"""nftables: llamafleet's own table `inet llamafleet`, rendered whole, loaded atomically, saved for boot."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import jinja2

from llamafleet.facts import FileContent, SystemdUnit
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell, Upload, files
from llamafleet.shell import quote

from . import facts as _facts
from . import plan as _plan

TABLE_FILE = "/etc/nftables.d/llamafleet.nft"
CONF = "/etc/nftables.conf"  # what Debian's nftables.service loads at boot
INCLUDE_LINE = f'include "{TABLE_FILE}"'
SERVICE = "nftables.service"
TEMPLATES = Path(__file__).resolve().parent / "templates"
_INCLUDE = re.compile(r'^\s*include\s+"([^"]+)"')


def render_table(plan) -> str:
    """The whole table file for `plan` (the text compared with the host's file)."""
    environment = jinja2.Environment(  # noqa: S701 - nft syntax, not HTML
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("llamafleet.nft.j2").render(ssh_port=plan.ssh_port, rules=plan.rules)


def wanted_state(plan) -> tuple:
    """What `nft -j list table inet llamafleet` shows once the rendered file is loaded (NftTable's terms)."""
    rules = [_facts.NftRule("tcp", plan.ssh_port, None, (), "accept", f"{_plan.TAG} ssh")]
    for rule in plan.rules:
        for family, sources in (("ip", rule.ipv4), ("ip6", rule.ipv6)):
            if sources:
                rules.append(_facts.NftRule(rule.proto, rule.port, family, sources, "accept", rule.tag))
        rules.append(_facts.NftRule(rule.proto, rule.port, None, (), "drop", rule.tag))
    return _comparable(_facts.NftState((("input", "input", 0, "accept"),), tuple(rules)))


def _comparable(state) -> tuple:
    rules = tuple(
        r.__class__(r.proto, r.port, r.family, tuple(sorted(r.sources)), r.verdict, r.comment) for r in state.rules
    )
    return (state.chains, rules)


def table(plan) -> Operation:
    """Table inet llamafleet holds exactly `plan`'s rules, in the kernel and in TABLE_FILE."""
    text = render_table(plan)
    saved, loaded = FileContent(TABLE_FILE), _facts.NftTable()
    load = Shell(quote("nft -f %s", TABLE_FILE))

    def planner(facts: Facts):
        if facts[saved] != text.rstrip("\n"):
            why = "table file missing" if facts[saved] is None else "table file differs"
            # The file first, then one `nft -f` transaction: the old table is replaced whole.
            return Change((Upload(TABLE_FILE, text.encode(), "0644"), load), why, TABLE_FILE, text)
        state = facts[loaded]
        if state is None:
            return Change((load,), "table inet llamafleet not loaded")
        if _comparable(state) != wanted_state(plan):
            return Change((load,), "table inet llamafleet in the kernel differs from its file")
        return NoChange(f"table inet llamafleet loaded and saved, {len(plan.rules)} guarded port(s)")

    return Operation(f"nftables table inet llamafleet ({TABLE_FILE})", [saved, loaded], planner)


def includes(conf_text: str | None, path: str = TABLE_FILE) -> bool:
    """Whether nftables.conf includes `path`, by name or by a glob matching it."""
    for line in (conf_text or "").splitlines():
        match = _INCLUDE.match(line)
        if match and fnmatch.fnmatchcase(path, match.group(1)):
            return True
    return False


def loaded_at_boot() -> Operation:
    """/etc/nftables.conf includes the table file (appended after its `flush ruleset`, others' rules kept)."""
    conf = FileContent(CONF)

    def planner(facts: Facts):
        if includes(facts[conf]):
            return NoChange(f"{CONF} includes {TABLE_FILE}")
        append = quote("printf '\\n# llamafleet (role firewall)\\n%%s\\n' %s >> %s", INCLUDE_LINE, CONF)
        return Change((Shell(append),), f"{CONF} missing" if facts[conf] is None else f"{CONF} lacks the include")

    return Operation(f"{CONF} includes {TABLE_FILE}", [conf], planner)


def service_enabled() -> Operation:
    """nftables.service is enabled for boot. Not started here: starting it runs `flush ruleset`,
    which would throw away other users' runtime rules; the table is already live from `nft -f`."""
    unit = SystemdUnit(SERVICE)

    def planner(facts: Facts):
        state = facts[unit].get("UnitFileState")
        if state == "enabled":
            return NoChange(f"{SERVICE} enabled")
        return Change((Shell(quote("systemctl enable %s", SERVICE)),), f"{SERVICE} {state or 'not found'}")

    return Operation(f"service {SERVICE} enabled", [unit], planner)


def nftables_rules(plan) -> list[Operation]:
    """Every operation that makes `plan` true with nftables, in order."""
    return [files.directory("/etc/nftables.d"), table(plan), loaded_at_boot(), service_enabled()]
