"""nftables: llamafleet's own table `inet llamafleet`, rendered whole, loaded atomically, saved for boot."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from functools import cache
from pathlib import Path

import jinja2

from llamafleet import templating
from llamafleet.facts import FileContent, PathInfo, SystemdUnit
from llamafleet.operations import Change, Facts, NoChange, Operation, Shell, Upload, files
from llamafleet.shell import quote

from . import facts as _facts
from . import ruleset as _ruleset

TABLE_FILE = "/etc/nftables.d/llamafleet.nft"
CONF = "/etc/nftables.conf"  # what Debian's nftables.service loads at boot
INCLUDE_LINE = f'include "{TABLE_FILE}"'
INCLUDE_COMMENT = "# llamafleet (role firewall)"
SERVICE = "nftables.service"
TEMPLATES = Path(__file__).resolve().parent / "templates"
_INCLUDE = re.compile(r'^\s*include\s+"([^"]+)"')


def render_table(ruleset) -> str:
    """The whole table file for `ruleset` (the text compared with the host's file)."""
    return _template().render(ssh_port=ruleset.ssh_port, rules=ruleset.rules)


@cache
def _template() -> jinja2.Template:
    """The table's template, compiled once per process (and its bytecode kept between runs)."""
    environment = jinja2.Environment(  # noqa: S701 - nft syntax, not HTML
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=templating.compiled("templates-nftables"),  # its own: other options than the roles'
    )
    return environment.get_template("llamafleet.nft.j2")


def wanted_state(ruleset) -> tuple:
    """What `nft -j list table inet llamafleet` shows once the rendered file is loaded (NftTable's terms)."""
    rules = [_facts.NftRule("tcp", ruleset.ssh_port, None, (), "accept", f"{_ruleset.TAG} ssh")]
    for rule in ruleset.rules:
        for family, sources in (("ip", rule.ipv4), ("ip6", rule.ipv6)):
            if sources:
                accept = _facts.NftRule(rule.proto, rule.port, family, sources, "accept", rule.tag, rule.interface)
                rules.append(accept)
        rules.append(_facts.NftRule(rule.proto, rule.port, None, (), "drop", rule.tag))
    return _comparable(_facts.NftState((("input", "input", 0, "accept"),), tuple(rules)))


def _comparable(state) -> tuple:
    rules = tuple(
        r.__class__(r.proto, r.port, r.family, tuple(sorted(r.sources)), r.verdict, r.comment, r.interface)
        for r in state.rules
    )
    return (state.chains, rules)


def table(ruleset) -> Operation:
    """Table inet llamafleet holds exactly `ruleset`'s rules, in the kernel and in TABLE_FILE."""
    text = render_table(ruleset)
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
        if _comparable(state) != wanted_state(ruleset):
            return Change((load,), "table inet llamafleet in the kernel differs from its file")
        return NoChange(f"table inet llamafleet loaded and saved, {len(ruleset.rules)} guarded port(s)")

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
        append = quote("printf '\\n%%s\\n%%s\\n' %s %s >> %s", INCLUDE_COMMENT, INCLUDE_LINE, CONF)
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


def nftables_rules(ruleset) -> list[Operation]:
    """Every operation that makes `ruleset` true with nftables, in order."""
    return [files.directory("/etc/nftables.d"), table(ruleset), loaded_at_boot(), service_enabled()]


def _our_include(line: str) -> bool:
    match = _INCLUDE.match(line)
    return bool(match) and match.group(1) == TABLE_FILE


def without_include(conf_text: str) -> str:
    """nftables.conf without what loaded_at_boot() appended: the include of our file by its own name,
    its comment and the blank line before that. A glob that also matches our file is someone's own line."""
    kept: list[str] = []
    for line in conf_text.split("\n"):
        if line == INCLUDE_COMMENT and kept and kept[-1] == "":
            kept.pop()
        if not (_our_include(line) or line == INCLUDE_COMMENT):
            kept.append(line)
    return "\n".join(kept) + "\n"


def _shipped(text: str, conffile_md5: str | None) -> bool:
    """Whether `text` is nftables.conf exactly as the package shipped it (dpkg keeps its md5)."""
    return conffile_md5 == hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class _Leftovers:
    """The facts removed() reads: the table, its file, nftables.conf (text and mode), the unit."""

    def __init__(self) -> None:
        self.table, self.saved = _facts.NftTable(), FileContent(TABLE_FILE)
        self.conf, self.conf_file = FileContent(CONF), PathInfo(CONF, False)
        self.shipped, self.unit = _facts.DebConffile("nftables", CONF), SystemdUnit(SERVICE)

    def all(self) -> list:
        return [self.table, self.saved, self.conf, self.conf_file, self.shipped, self.unit]

    def conf_steps(self, facts: Facts) -> tuple[list, list[str]]:
        """nftables.conf without our include (same mode and owner); the unit disabled if nobody else needs it."""
        text = facts[self.conf]
        if text is None or not any(_our_include(line) for line in text.split("\n")):
            return [], []
        state, text = facts[self.conf_file], without_include(text)
        steps: list = [Upload(CONF, text.encode(), f"{state.mode:04o}", state.owner, state.group)]
        why = [f"{CONF} includes {TABLE_FILE}"]
        if facts[self.unit].get("UnitFileState") == "enabled" and _shipped(text, facts[self.shipped]):
            steps.append(Shell(quote("systemctl disable %s", SERVICE)))
            why.append(f"{SERVICE} enabled for llamafleet's table only")
        return steps, why


def removed() -> Operation:
    """No llamafleet table in the kernel, no table file, no include of it (another frontend is managed).

    The include goes first, so a boot never reads an include of a missing file. When nftables.conf is
    then the file the package shipped, nobody else uses nftables.service: it is disabled again, since
    its `flush ruleset` at boot would race the managed frontend's own rules.
    """
    read = _Leftovers()

    def planner(facts: Facts):
        steps, why = read.conf_steps(facts)
        if facts[read.saved] is not None:
            steps.append(Shell(quote("rm -f -- %s", TABLE_FILE)))
            why.append("table file present")
        if facts[read.table] is not None:
            steps.append(Shell(quote("nft delete table %s %s", *_facts.NFT_TABLE)))
            why.append("table inet llamafleet loaded")
        if not steps:
            return NoChange("no llamafleet table, table file or include")
        return Change(tuple(steps), ", ".join(why))

    return Operation("nftables holds no llamafleet table", read.all(), planner)
