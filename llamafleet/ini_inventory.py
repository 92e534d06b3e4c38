"""Ansible's INI inventories, read as ansible-core's ini plugin reads them, into the YAML inventory shape.

`read()` returns what yamlfile.load() returns for a YAML inventory (all -> hosts/vars/children, every mapping a
LineDict that knows its lines), so inventory.py validates, resolves and checks an INI inventory exactly as it does a
YAML one. What the ini plugin does, and so what this module does:

- `[group]` lists hosts, `[group:children]` groups, `[group:vars]` one `key=value` per line; `#` and `;` start a
  comment line. Hosts before the first section are in no group (Ansible's `ungrouped`). A group is declared by
  `[g]` or `[g:children]` anywhere in the file; `[g:vars]` or a child `g` with no declaration is an error.
- A host line is split like a shell line (quotes, backslashes, `#` comments): `name[:port] key=value ...`. The
  port applies when the host is first listed; the line's own variables come after it (ansible_port=23 wins).
- Values, on host lines and in `:vars` sections alike, are read by ini_values.py. On a host line the shell-like
  split comes first, so `d="x y"` is "x y" and `e="1"` is the number 1; in a `:vars` section the whole rest of the
  line is the value, a `# note` included.

llamafleet is stricter than Ansible where its own rules say so: host and group names follow variables.NAME_RULES
and variable names are identifiers (Ansible warns and goes on); ranges are hostranges.py's (`[01:03]`, `[1:9:2]`,
`[a:c]`); the file is UTF-8 (Ansible lets other bytes through as they are). A byte order mark is allowed.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ini_values, vault, yamlfile
from .errors import InventoryError
from .hostranges import expand_range, range_problem
from .yamlfile import LineDict, printable, shorten

# Ansible tries its yaml plugin first on these names (and on names without an extension), its ini plugin on all.
YAML_SUFFIXES = (".yml", ".yaml", ".json")
COMMENT_MARKERS = ("#", ";")
SECTION_KINDS = ("hosts", "vars", "children")
# (host, line) entries one file may list, ranges expanded: bounds the work before inventory.py's own limits apply.
MAX_HOST_ENTRIES = 200_000

_SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?")
_CHILD = re.compile(r"([^:\]\s]+)\s*(?:#.*)?")
# host:port and [host]:port, the host part being a name or address that may hold ranges
_PORT_IN_BRACKETS = re.compile(r"\[(.+)\]:([0-9]+)")
_PORT_AFTER = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)")
_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = re.compile(rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*", re.IGNORECASE)


def read(path: Path, vault_secrets: vault.VaultSecrets | None = None) -> Any:
    """The inventory file at `path` in the YAML inventory shape, whether it is written in YAML or in INI.

    The format is told from the content, in the order Ansible tries its plugins: a name ending in .yml, .yaml or
    .json, or with no extension (`hosts`), is read as YAML first and as INI when it is not a YAML inventory; any
    other name (`hosts.ini`, `inventory.cfg`) as INI first, then as YAML (llamafleet has always read YAML whatever
    the name). A file whose first line that is not blank or a comment starts with `[` is INI: `[web]` is also a YAML
    list, never a YAML inventory. A YAML inventory is a mapping whose values are mappings or empty; an INI host line
    such as `h1 note="a: b"` is a YAML mapping too, but not one of groups, and is read as INI (Ansible would read
    it as YAML holding no group and give an empty inventory). When neither reading works, the error shown is that
    of the reading that got further into the file (YAML's on a tie for YAML names, INI's for the others).

    A file vaulted whole is opened first (yamlfile.read_text), whichever format it holds, and all it holds is
    marked as vaulted.
    """
    file = printable(str(path))
    text, vaulted = yamlfile.read_text(path, vault_secrets)
    if _first_line(text)[1].startswith("["):
        document = parse(text, file)
    elif path.suffix in YAML_SUFFIXES or not path.suffix:
        document = _yaml_first(text, file, vault_secrets)
    else:
        document = _ini_first(text, file, vault_secrets)
    return vault.marked(document) if vaulted else document


def _yaml_first(text: str, file: str, vault_secrets: vault.VaultSecrets | None) -> Any:
    try:
        document = yamlfile.loads(text, file, vault_secrets)
    except vault.VaultError:
        raise
    except InventoryError as yaml_error:
        try:
            return parse(text, file)
        except InventoryError as ini_error:
            raise (ini_error if (ini_error.line or 0) > (yaml_error.line or 0) else yaml_error) from None
    if document is None or _is_yaml_inventory(document):
        return document
    try:
        return parse(text, file)
    except InventoryError as ini_error:
        if isinstance(document, dict) or (ini_error.line or 0) <= _first_line(text)[0]:
            return document  # inventory.py names what is wrong with it as YAML
        raise


def _ini_first(text: str, file: str, vault_secrets: vault.VaultSecrets | None) -> Any:
    try:
        return parse(text, file)
    except InventoryError as ini_error:
        try:
            document = yamlfile.loads(text, file, vault_secrets)
        except vault.VaultError:
            raise
        except InventoryError:
            raise ini_error from None
        if _is_yaml_inventory(document):
            return document
        raise


def _is_yaml_inventory(document: Any) -> bool:
    return isinstance(document, dict) and all(body is None or isinstance(body, dict) for body in document.values())


def _first_line(text: str) -> tuple[int, str]:
    """The number and text of the first line that is not blank or a comment; (0, "") when there is none."""
    for number, line in enumerate(_lines(text), 1):
        line = line.strip()
        if line and line[0] not in COMMENT_MARKERS:
            return number, line
    return 0, ""


def _lines(text: str) -> list[str]:
    """The lines as Ansible splits them (str.splitlines: also at \\x0b, \\x0c, \\x1c-\\x1e, \\x85, \\u2028, \\u2029)."""
    return text.removeprefix("\ufeff").splitlines()


def parse(text: str, file: str) -> LineDict | None:
    """INI text as the YAML inventory shape (None when it declares nothing); InventoryError naming the line."""
    return _IniReader(file).read(_lines(text))


def _line_dict() -> LineDict:
    block = LineDict()
    block.lines = {}
    return block


def _put(block: LineDict, key: Any, value: Any, line: int, *, first: bool = False) -> None:
    """Set `key`, remembering its line (the first one with `first`, else the latest)."""
    if first and key in block:
        return
    block[key] = value
    block.lines[key] = line


@dataclass(slots=True)
class _Group:
    """A group's hosts (name -> None, in the order listed), vars and children (name -> None), each made when first
    needed: a hostile file may name a million groups."""

    line: int | None
    hosts: LineDict | None = None
    vars: LineDict | None = None
    children: LineDict | None = None

    def block(self, kind: str) -> LineDict:
        if getattr(self, kind) is None:
            setattr(self, kind, _line_dict())
        return getattr(self, kind)


class _IniReader:
    """One pass over the lines, as Ansible's ini plugin makes it, collecting groups and each host's variables."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.line = 0
        self.groups: dict[str, _Group] = {"all": _Group(None), "ungrouped": _Group(None)}
        self.declared = {"all", "ungrouped"}
        self.references: dict[str, tuple[int, str]] = {}  # group -> (line, group) of its first use as a child or vars
        self.host_vars: dict[str, LineDict] = {}
        self.entries = 0

    def error(self, message: str, where: str | None = None, key: str | None = None) -> InventoryError:
        key = printable(shorten(key)) if key is not None else None
        return InventoryError(message, file=self.file, where=where, key=key, line=self.line)

    def read(self, lines: list[str]) -> LineDict | None:
        group, kind = "ungrouped", "hosts"
        for self.line, text in enumerate((line.strip() for line in lines), 1):
            if not text or text[0] in COMMENT_MARKERS:
                continue
            header = _SECTION.fullmatch(text)
            if header:
                group, kind = self.section(header.group(1), header.group(2) or "hosts")
            elif text.startswith("[") and text.endswith("]"):
                raise self.error("not a section header ([group], [group:vars] or [group:children])", key=text)
            elif kind == "hosts":
                self.host_line(text, group)
            elif kind == "vars":
                self.vars_line(text, group)
            else:
                self.child_line(text, group)
        self.check_references()
        self.check_loops()
        return self.shape()

    def section(self, name: str, kind: str) -> tuple[str, str]:
        if kind not in SECTION_KINDS:
            raise self.error(f"unknown section type {kind!r} (hosts, vars or children)", key=f"[{name}:{kind}]")
        if name not in self.groups:
            self.groups[name] = _Group(self.line)
        self.groups[name].line = self.groups[name].line or self.line
        if kind == "vars":
            self.refer(name, name)
        else:
            self.declared.add(name)
        return name, kind

    def refer(self, name: str, group: str) -> None:
        """Note a use of group `name` in a section of `group`: some section must declare it, before or after."""
        if name not in self.declared and name not in self.references:
            self.references[name] = (self.line, group)

    def host_line(self, text: str, group: str) -> None:
        where = f"group {group}"
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError as exc:  # No closing quotation, No escaped character
            raise self.error(f"cannot split the host line: {str(exc).lower()}", where, text) from None
        if not tokens:
            raise self.error("expected a host name", where, text)
        names, port = self.host_names(tokens[0], where)
        values = _line_dict()
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep:
                raise self.error("expected key=value after the host name", where, token)
            _put(values, key, self.value(key, value, f"host {names[0]}"), self.line)
        target = self.groups["all" if group in ("all", "ungrouped") else group]
        for name in names:
            if name not in self.host_vars:
                self.host_vars[name] = _line_dict()
                if port:  # as Ansible: the port of the host's first line, and not 0
                    _put(self.host_vars[name], "ansible_port", port, self.line)
            for key, value in values.items():
                _put(self.host_vars[name], key, value, self.line)
            _put(target.block("hosts"), name, None, self.line, first=True)

    def host_names(self, token: str, where: str) -> tuple[list[str], int | None]:
        pattern, port = _split_port(token)
        if pattern.strip().endswith(":") and port is None:
            raise self.error("a host name cannot end in ':' (it introduces a port: host:2222)", where, token)
        if pattern.strip() == "---":
            raise self.error("'---' starts a YAML document, not an INI host line", where, token)
        problem = range_problem(pattern)
        if problem:
            raise self.error(problem, where, pattern)
        names = expand_range(pattern)
        self.entries += len(names)
        if self.entries > MAX_HOST_ENTRIES:
            raise self.error(f"more than {MAX_HOST_ENTRIES} host entries, ranges expanded (the limit)", where, pattern)
        return names, port

    def vars_line(self, text: str, group: str) -> None:
        key, sep, value = text.partition("=")
        if not sep:
            raise self.error("expected key=value in a [group:vars] section", f"group {group}", text)
        key = key.strip()
        _put(self.groups[group].block("vars"), key, self.value(key, value.strip(), f"group {group}"), self.line)

    def value(self, key: str, text: str, where: str) -> Any:
        try:
            return ini_values.read(key, text)
        except ValueError as exc:
            raise self.error(str(exc), where, key) from None

    def child_line(self, text: str, group: str) -> None:
        where = f"group {group}"
        found = _CHILD.fullmatch(text)
        if not found:
            raise self.error("expected one group name per line in a [group:children] section", where, text)
        child = found.group(1)
        if child == group:
            raise self.error("a group cannot be its own child", where, child)
        if child == "all":
            raise self.error("'all' holds every group; it cannot be a child", where, child)
        if child not in self.groups:
            self.groups[child] = _Group(self.line)
        self.refer(child, group)
        _put(self.groups[group].block("children"), child, None, self.line, first=True)

    def check_references(self) -> None:
        missing = [(*self.references[name], name) for name in self.references if name not in self.declared]
        if not missing:
            return
        self.line, group, name = min(missing)
        if name == group:  # used by its own [name:vars] section
            raise self.error("vars for a group that no [group] or [group:children] section declares", f"group {name}")
        message = f"child group {name!r} is declared by no [{name}] or [{name}:children] section"
        raise self.error(message, f"group {group}")

    def check_loops(self) -> None:
        """Refuse a group that contains itself through its children, naming the line that closes the loop."""
        below = {name: set(group.children) for name, group in self.groups.items() if group.children}
        parents: dict[str, list[str]] = {}
        for name, children in below.items():
            for child in children:
                parents.setdefault(child, []).append(name)
        leaves = [child for child in parents if child not in below]
        while leaves:  # take away groups whose children are all taken: what is left holds a loop
            leaf = leaves.pop()
            for parent in parents.get(leaf, []):
                below[parent].discard(leaf)
                if not below[parent]:
                    leaves.append(parent)
        stuck = {name: children for name, children in below.items() if children}
        if stuck:
            self.raise_loop(stuck)

    def raise_loop(self, stuck: dict[str, set[str]]) -> None:
        """Each group left has a child left: walk down until one repeats; report the loop's last-written line."""
        path, seen = [next(iter(stuck))], {}
        while path[-1] not in seen:
            seen[path[-1]] = len(path) - 1
            path.append(min(stuck[path[-1]], key=self.groups[path[-1]].children.lines.__getitem__))
        loop = path[seen[path[-1]] :]
        parent, child = max(zip(loop, loop[1:], strict=False), key=lambda e: self.groups[e[0]].children.lines[e[1]])
        self.line = self.groups[parent].children.lines[child]
        shown = printable(" > ".join(loop if len(loop) <= 6 else [*loop[:3], "...", *loop[-2:]]))
        raise self.error(f"child group {child!r} contains {parent!r}: a loop ({shown})", f"group {parent}")

    def shape(self) -> LineDict | None:
        """The YAML inventory shape: every group at the top level, a host's variables where it is first listed."""
        if len(self.groups) == 2 and not any(g.hosts or g.vars or g.children for g in self.groups.values()):
            return None
        document, listed = _line_dict(), set()
        for name, group in self.groups.items():
            body = _line_dict()
            hosts = _line_dict()
            for host, line in (group.hosts.lines if group.hosts else {}).items():
                _put(hosts, host, None if host in listed else self.host_vars[host], line)
                listed.add(host)
            for key, block in (("hosts", hosts), ("vars", group.vars), ("children", group.children)):
                if block:
                    _put(body, key, block, group.line or 1)
            if body or name not in ("all", "ungrouped"):
                _put(document, name, body or None, group.line or 1)
        return document


def _split_port(token: str) -> tuple[str, int | None]:
    """`host:port` or `[host]:port` as (host, port), the port when the host part is a name or an address."""
    host, port = token, None
    for pattern in (_PORT_IN_BRACKETS, _PORT_AFTER):
        found = pattern.fullmatch(host)
        if found:
            host, port = found.group(1), found.group(2)
    if port is None or len(port) > ini_values.MAX_INT_DIGITS or not _is_host_pattern(host):
        return token, None
    return host, int(port)


def _is_host_pattern(host: str) -> bool:
    """A DNS-like name or IPv4 address (with ranges) or an IPv6 address: what Ansible takes a port after."""
    if re.fullmatch(r"[0-9A-Fa-f:.]+", host):
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            pass
    labels = host.split(".")
    return all(_LABEL.fullmatch(label) and not label.endswith(("-", "_")) for label in labels)
