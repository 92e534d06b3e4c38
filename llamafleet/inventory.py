"""Ansible-format YAML inventories: groups, group_vars/host_vars, precedence and validation."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import variables, yamlfile
from .errors import InventoryError

DEFAULT_INVENTORY = "inventory/hosts.yml"
GROUP_KEYS = {"hosts", "vars", "children"}
VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")
_RANGE = re.compile(r"\[(?:(\d+):(\d+)(?::(\d+))?|([a-z]):([a-z]))\]")


@dataclass
class Group:
    """A group as written: its own vars, direct hosts, children, and where it was defined."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)
    depth: int = 0


@dataclass
class Host:
    """A host with its groups and every variable resolved by precedence."""

    name: str
    groups: list[str]
    vars: dict[str, Any]

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port") or 22)

    def __repr__(self) -> str:
        return f"Host({self.name!r})"


@dataclass
class Inventory:
    """The resolved inventory: hosts in file order, and each group's member hosts."""

    path: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]

    @property
    def head(self) -> Host:
        return self.hosts[self.groups["head"][0]]

    @property
    def workers(self) -> list[Host]:
        return [self.hosts[name] for name in self.groups.get("workers", [])]

    def select(self, limit: str | None) -> list[Host]:
        """Hosts matching --limit: comma-separated host or group names (all when None)."""
        if not limit:
            return list(self.hosts.values())
        chosen: set[str] = set()
        for pattern in filter(None, (p.strip() for p in limit.split(","))):
            if pattern in self.groups:
                chosen.update(self.groups[pattern])
            elif pattern in self.hosts:
                chosen.add(pattern)
            else:
                raise InventoryError(f"--limit: no host or group named '{pattern}'", file=str(self.path))
        return [host for name, host in self.hosts.items() if name in chosen]

    def to_json(self) -> dict[str, Any]:
        """The document `invoke inventory --json` prints."""
        hosts = {h.name: {"groups": h.groups, "vars": h.vars} for h in self.hosts.values()}
        return {"hosts": hosts, "groups": self.groups}


def default_path() -> str:
    """The inventory used when -i is not given: $LLAMAFLEET_INVENTORY, else inventory/hosts.yml."""
    return os.environ.get("LLAMAFLEET_INVENTORY") or DEFAULT_INVENTORY


def load(path: str | Path, extra_vars: dict[str, Any] | None = None) -> Inventory:
    """Read, resolve and validate an inventory; raises InventoryError on the first problem."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InventoryError("no such inventory file (use -i FILE or set LLAMAFLEET_INVENTORY)", file=str(path))
    data = yamlfile.load(path)
    groups, host_vars, host_order = _Parser(path).parse(data)
    _set_depths(groups)
    files_read: dict[Path, dict[str, Any]] = {}
    hosts = {name: _resolve(name, groups, host_vars, path, extra_vars or {}, files_read) for name in host_order}
    members = {g: _members(g, groups) for g in _group_order(groups)}
    inventory = Inventory(path=path, hosts=hosts, groups=members)
    _check_cluster(inventory)
    return inventory


class _Parser:
    """Walks the YAML structure into groups and inline host variables."""

    def __init__(self, path: Path) -> None:
        self.file = str(path)
        self.groups: dict[str, Group] = {"all": Group("all")}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_order: list[str] = []

    def parse(self, data: Any) -> tuple[dict[str, Group], dict[str, dict[str, Any]], list[str]]:
        if data is None:
            raise InventoryError("the inventory is empty", file=self.file)
        if not isinstance(data, dict):
            raise InventoryError("the top level must be a mapping of groups (all: ...)", file=self.file)
        for name, body in data.items():
            self.group(str(name), body, parent=None, line=data.line_of(name))
        loners = [h for h in self.host_order if not any(h in g.hosts for n, g in self.groups.items() if n != "all")]
        if loners:  # as in Ansible, hosts in no group but all form the group ungrouped
            self.group("ungrouped", None, parent=None, line=None)
            self.groups["ungrouped"].hosts.extend(h for h in loners if h not in self.groups["ungrouped"].hosts)
        return self.groups, self.host_vars, self.host_order

    def group(self, name: str, body: Any, parent: str | None, line: int | None) -> None:
        where = f"group {name}"
        group = self.groups.setdefault(name, Group(name))
        if parent:
            group.parents.add(parent)
            if name not in self.groups[parent].children:
                self.groups[parent].children.append(name)
        elif name != "all":
            group.parents.add("all")
            self.groups["all"].children.append(name)
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryError(
                "a group must be a mapping with hosts/vars/children", file=self.file, where=where, line=line
            )
        for key in body:
            if key not in GROUP_KEYS:
                raise InventoryError(
                    "unknown key in a group (expected hosts, vars or children)",
                    file=self.file,
                    where=where,
                    key=str(key),
                    line=body.line_of(key),
                )
        group.vars.update(self.vars_block(body.get("vars"), where, body.line_of("vars")))
        self.hosts(group, body.get("hosts"), body.line_of("hosts"))
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise InventoryError(
                "children must be a mapping of groups", file=self.file, where=where, line=body.line_of("children")
            )
        for child, child_body in children.items():
            self.check_cycle(str(child), name)
            self.group(str(child), child_body, parent=name, line=children.line_of(child))

    def hosts(self, group: Group, hosts: Any, line: int | None) -> None:
        if hosts is None:
            return
        if not isinstance(hosts, dict):
            raise InventoryError(
                "hosts must be a mapping of host names", file=self.file, where=f"group {group.name}", line=line
            )
        for pattern, body in hosts.items():
            for name in expand_range(str(pattern)):
                where = f"host {name}"
                values = self.vars_block(body, where, hosts.line_of(pattern))
                self.host_vars.setdefault(name, {}).update(values)
                if name not in self.host_order:
                    self.host_order.append(name)
                if name not in group.hosts:
                    group.hosts.append(name)

    def vars_block(self, block: Any, where: str, line: int | None) -> dict[str, Any]:
        if block is None:
            return {}
        if not isinstance(block, dict):
            raise InventoryError("variables must be a mapping", file=self.file, where=where, line=line)
        check_vars(block, self.file, where)
        return dict(block)

    def check_cycle(self, child: str, parent: str) -> None:
        if child == "all" or child == parent or child in _ancestors(parent, self.groups):
            raise InventoryError(f"group '{child}' would contain itself", file=self.file, where=f"group {parent}")


def check_vars(block: dict, file: str, where: str) -> None:
    """Reject unknown-looking llamafleet variables and values of the wrong type."""
    for name, value in block.items():
        line = block.line_of(name) if hasattr(block, "line_of") else None
        problem = variables.check_name(str(name))
        if problem is None and (name in variables.catalogue() or name in variables.CONNECTION_VARS):
            problem = variables.check_value(str(name), value)
        if problem:
            raise InventoryError(problem, file=file, where=where, key=str(name), line=line)


def expand_range(pattern: str) -> list[str]:
    """Ansible host ranges: 'w[01:03]' -> w01, w02, w03; 'w[1:5:2]' -> w1, w3, w5; 'n[a:c]' -> na, nb, nc."""
    match = _RANGE.search(pattern)
    if not match:
        return [pattern]
    start, end, stride, first, last = match.groups()
    if first:
        items = [chr(c) for c in range(ord(first), ord(last) + 1)]
    else:
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, int(stride or 1))]
    names = [pattern[: match.start()] + item + pattern[match.end() :] for item in items]
    return [n for name in names for n in expand_range(name)]


def _ancestors(name: str, groups: dict[str, Group]) -> set[str]:
    seen: set[str] = set()
    todo = list(groups[name].parents) if name in groups else []
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(groups[parent].parents)
    return seen


def _set_depths(groups: dict[str, Group]) -> None:
    """Depth as Ansible counts it: the longest path from all."""

    def depth(name: str) -> int:
        parents = groups[name].parents
        return 0 if name == "all" else 1 + max((depth(p) for p in parents), default=0)

    for group in groups.values():
        group.depth = depth(group.name)


def _group_order(groups: dict[str, Group]) -> list[str]:
    """Groups in Ansible's precedence order: depth, then ansible_group_priority, then name."""

    def key(name: str) -> tuple:
        group = groups[name]
        return (group.depth, int(group.vars.get("ansible_group_priority", 1)), name)

    return sorted(groups, key=key)


def _members(name: str, groups: dict[str, Group]) -> list[str]:
    """Every host in a group, its descendants included, in definition order."""
    found: list[str] = []
    for host in groups[name].hosts:
        if host not in found:
            found.append(host)
    for child in groups[name].children:
        found.extend(h for h in _members(child, groups) if h not in found)
    if name == "all":
        return found
    return found


def _host_groups(host: str, groups: dict[str, Group]) -> list[str]:
    direct = [g for g in groups if host in groups[g].hosts]
    found = set(direct)
    for g in direct:
        found |= _ancestors(g, groups)
    found.add("all")
    return [g for g in _group_order(groups) if g in found]


def _resolve(
    host: str,
    groups: dict[str, Group],
    host_vars: dict[str, dict[str, Any]],
    path: Path,
    extra_vars: dict[str, Any],
    files_read: dict[Path, dict[str, Any]],
) -> Host:
    """Combine variables in Ansible's order (later wins, top-level keys replace)."""
    in_groups = _host_groups(host, groups)
    resolved: dict[str, Any] = copy.deepcopy(variables.defaults())
    for name in in_groups:
        # ansible_group_priority orders groups; it is not a variable of their hosts.
        resolved.update({k: v for k, v in groups[name].vars.items() if k != "ansible_group_priority"})
    for name in in_groups:
        resolved.update(_vars_files(path.parent / "group_vars", name, f"group {name}", files_read))
    resolved.update(host_vars.get(host, {}))
    resolved.update(_vars_files(path.parent / "host_vars", host, f"host {host}", files_read))
    resolved.update(extra_vars)
    resolved.setdefault("inventory_hostname", host)
    return Host(name=host, groups=[g for g in in_groups if g != "all"], vars=dict(sorted(resolved.items())))


def _vars_files(folder: Path, name: str, where: str, files_read: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    """Like Ansible: the first of NAME, NAME.yml, NAME.yaml, NAME.json; a folder is read whole, sorted."""
    found: dict[str, Any] = {}
    for file in _vars_file_list(folder, name):
        if file not in files_read:
            data = yamlfile.load(file)
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise InventoryError("must be a mapping of variables", file=str(file), where=where)
            check_vars(data, str(file), where)
            files_read[file] = dict(data)
        found.update(files_read[file])
    return found


def _vars_file_list(folder: Path, name: str) -> list[Path]:
    for suffix in VARS_SUFFIXES:
        candidate = folder / (name + suffix)
        if candidate.is_dir():
            return _folder_files(candidate)
        if candidate.is_file():
            return [candidate]
    return []


def _folder_files(folder: Path) -> list[Path]:
    """YAML/JSON files below a vars folder; hidden files, backups~ and other extensions are skipped."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir():
            found.extend(_folder_files(entry))
        elif entry.suffix in VARS_SUFFIXES:
            found.append(entry)
    return found


def _check_cluster(inventory: Inventory) -> None:
    """Cross-host rules: exactly one head, head not a worker, unique address:port."""
    file = str(inventory.path)
    heads = inventory.groups.get("head", [])
    if len(heads) != 1:
        found = ", ".join(heads) if heads else "none"
        raise InventoryError(f"must have exactly one host, found {len(heads)} ({found})", file=file, where="group head")
    for name in inventory.groups.get("workers", []):
        if name in heads:
            raise InventoryError("is in both head and workers", file=file, where=f"host {name}")
    seen: dict[tuple[str, int], str] = {}
    for host in inventory.hosts.values():
        key = (host.address, host.port)
        if key in seen:
            raise InventoryError(
                f"same address {host.address}:{host.port} as host {seen[key]}",
                file=file,
                where=f"host {host.name}",
                key="ansible_host",
            )
        seen[key] = host.name


def parse_extra_vars(items: list[str] | None) -> dict[str, Any]:
    """-e KEY=VALUE (value read as YAML, so 8081 is a number) or -e @file.yml; later wins."""
    result: dict[str, Any] = {}
    for item in items or []:
        if item.startswith("@"):
            data = yamlfile.load(Path(item[1:]).expanduser())
            if not isinstance(data, dict):
                raise InventoryError("must be a mapping of variables", file=item[1:], where="-e")
            check_vars(data, item[1:], "-e")
            result.update(data)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InventoryError(f"expected KEY=VALUE or @file.yml, got {item!r}", where="-e")
        block = yamlfile.LineDict({key.strip(): yamlfile.loads(value, "-e") if value else ""})
        check_vars(block, "command line", "-e")
        result.update(block)
    return result
