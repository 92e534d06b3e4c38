"""Ansible-format inventories (YAML, INI, scripts, folders, several -i merged): groups, group_vars/host_vars,
precedence and validation."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import connvars, inventory_sources, variables, yamlfile
from .errors import InventoryError
from .hostranges import MAX_HOSTS, expand_range, range_problem
from .inventory_groups import Group, precedence_order, set_depths
from .inventory_groups import members as group_members
from .inventory_sources import DEFAULT_INVENTORY, Ignored
from .varsfiles import VarsFiles, check_vars, shown
from .vault import VaultSecrets
from .yamlfile import printable, shorten

GROUP_KEYS = {"hosts", "vars", "children"}
# Host and group names follow variables.NAME_RULES: host names are plain DNS-like names or IP addresses, group
# names letters, digits, '_' and '-'; both are used as file names (host_vars/NAME.yml) and written into files.


@dataclass
class Host:
    """A host with its groups, every variable resolved by precedence, and how SSH reaches it.

    `connection` is read from the variables once, when the inventory is loaded (connvars.read): the address
    is ansible_host (or Ansible's older ansible_ssh_host), else the name.
    """

    name: str
    groups: list[str]
    vars: dict[str, Any]
    connection: connvars.Settings

    def __repr__(self) -> str:
        return f"Host({self.name!r})"


@dataclass
class Inventory:
    """The resolved inventory: hosts in file order, each group's member hosts, and warnings about them.

    `path` is the first file read (relative paths in the inventory, the API key file and the run history are
    beside it); `sources` the -i sources as given, files, folders or scripts.
    """

    path: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)
    sources: tuple[Path, ...] = ()

    @property
    def shown(self) -> str:
        """How messages about the whole inventory name it: its file, or its sources."""
        return printable(", ".join(str(source) for source in self.sources or [self.path]))

    @property
    def head(self) -> Host:
        """The first host of group head: the head, in an inventory of one cluster (see clusters_of)."""
        return self.hosts[self.groups["head"][0]]

    @property
    def workers(self) -> list[Host]:
        """Every host of group workers, of every cluster."""
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
                raise InventoryError(f"--limit: no host or group named {shorten(pattern)!r}", file=str(self.path))
        return [host for name, host in self.hosts.items() if name in chosen]

    def to_json(self) -> dict[str, Any]:
        """The document `invoke inventory --json` prints; secret variables show as "(secret)"."""
        hosts = {h.name: {"groups": h.groups, "vars": variables.redact(h.vars)} for h in self.hosts.values()}
        return {"hosts": hosts, "groups": self.groups}


def default_path() -> str:
    """The inventory used when -i is not given: $LLAMAFLEET_INVENTORY, else inventory/hosts.yml."""
    return os.environ.get("LLAMAFLEET_INVENTORY") or DEFAULT_INVENTORY


def load(
    paths: str | Path | Sequence[str | Path],
    extra_vars: dict[str, Any] | None = None,
    *,
    vault_secrets: VaultSecrets | None = None,
    fallback: Mapping[str, Any] | None = None,
    ignored: Ignored | None = None,
) -> Inventory:
    """Read, resolve and validate an inventory; raises InventoryError on the first problem.

    `paths`: one -i source or several, each a file, a folder of them or a script, merged in order as Ansible
    merges them (a later source's values win; group_vars/ and host_vars/ beside each file or in each folder).
    Vaulted files and values are opened with `vault_secrets` (vault_secrets.vault_secrets() reads them).
    `fallback`: values a variable takes where neither the inventory nor -e sets it under any of Ansible's
    spellings (ansible.cfg's remote_user...), above the roles' defaults. `ignored`: the names a folder skips.
    """
    sources = [_source(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not sources:
        raise InventoryError("no inventory given (use -i FILE or set LLAMAFLEET_INVENTORY)")
    parser, roots, first = _Parser(), [], None
    for source in sources:
        for file in inventory_sources.files(source, ignored):
            parser.add(inventory_sources.read(file, vault_secrets), printable(str(file)))
            first = first or file
        roots.append(source if source.is_dir() else source.parent)
    shown_name = printable(", ".join(map(str, sources)))
    groups, host_vars, host_order = parser.finish(shown_name)
    set_depths(groups, shown_name)
    members = group_members(groups, precedence_order(groups), shown_name)
    opened: dict[Path, VarsFiles] = {}
    vars_files = [opened.setdefault(root, VarsFiles(root, vault_secrets)) for root in roots]
    groups_of: dict[str, list[str]] = {name: [] for name in host_order}
    for group, names in members.items():
        for name in names:
            groups_of[name].append(group)
    resolved = {
        name: _resolve(name, groups_of[name], groups, host_vars, vars_files, extra_vars or {}, fallback or {})
        for name in host_order
    }
    hosts, warnings = _hosts(groups_of, resolved, str(first))
    inventory = Inventory(path=first, hosts=hosts, groups=members, warnings=warnings, sources=tuple(sources))
    _check_cluster(inventory)
    return inventory


def _source(name: str | Path) -> Path:
    """A -i source that exists: a file, a folder or a script."""
    path = _user_path(str(name), where=None)
    if not _is_file(path) and not _is_dir(path):
        if "," in str(name) and not path.exists():
            message = "a host list (-i host1,host2) is not an inventory llamafleet reads: write a file with groups"
            raise InventoryError(message, file=printable(str(name)))
        raise InventoryError(
            "no such inventory file (use -i FILE or set LLAMAFLEET_INVENTORY)", file=printable(str(path))
        )
    return path


class _Parser:
    """Walks the YAML structure of each inventory file into groups and inline host variables; a later file's
    values replace an earlier one's, key by key, as Ansible's sources do."""

    def __init__(self) -> None:
        self.file = ""
        self.groups: dict[str, Group] = {"all": Group("all")}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_order: dict[str, None] = {}  # an ordered set

    def add(self, data: Any, file: str) -> None:
        self.file = file
        if data is None:
            raise InventoryError("the inventory is empty", file=self.file)
        if not isinstance(data, dict):
            raise InventoryError("the top level must be a mapping of groups (all: ...)", file=self.file)
        for name, body in data.items():
            self.group(name, body, parent=None, line=data.line_of(name))

    def finish(self, file: str) -> tuple[dict[str, Group], dict[str, dict[str, Any]], list[str]]:
        """Groups, host variables and hosts in order once every file is read; `ungrouped` as Ansible makes it."""
        self.file = file
        grouped = {h for name, g in self.groups.items() if name not in ("all", "ungrouped") for h in g.hosts}
        loners = [h for h in self.host_order if h not in grouped]
        if "ungrouped" in self.groups:  # a host listed there and in another group is that group's only
            self.groups["ungrouped"].hosts = [h for h in self.groups["ungrouped"].hosts if h not in grouped]
        if loners:  # as in Ansible, hosts in no group but all form the group ungrouped
            self.group("ungrouped", None, parent=None, line=None)
            self.groups["ungrouped"].hosts.extend(loners)
        for group in self.groups.values():
            group.hosts = list(dict.fromkeys(group.hosts))
            group.children = list(dict.fromkeys(group.children))
        return self.groups, self.host_vars, list(self.host_order)

    def group(self, name: Any, body: Any, parent: str | None, line: int | None) -> None:
        self.check_name(name, "group", parent, line)
        where = f"group {name}"
        group = self.groups.setdefault(name, Group(name))
        if parent or name != "all":
            group.parents.add(parent or "all")
            self.groups[parent or "all"].children.append(name)
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryError(
                "a group must be a mapping with hosts/vars/children", file=self.file, where=where, line=line
            )
        for key in body:
            if key not in GROUP_KEYS:
                message = "unknown key in a group (expected hosts, vars or children)"
                raise InventoryError(message, file=self.file, where=where, key=shown(key), line=body.line_of(key))
        group.vars.update(self.vars_block(body.get("vars"), where, body.line_of("vars")))
        self.hosts(group, body.get("hosts"), body.line_of("hosts"))
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise InventoryError(
                "children must be a mapping of groups", file=self.file, where=where, line=body.line_of("children")
            )
        for child, child_body in children.items():
            self.group(child, child_body, parent=name, line=children.line_of(child))

    def hosts(self, group: Group, hosts: Any, line: int | None) -> None:
        if hosts is None:
            return
        if not isinstance(hosts, dict):
            raise InventoryError(
                "hosts must be a mapping of host names", file=self.file, where=f"group {group.name}", line=line
            )
        for pattern, body in hosts.items():
            names = self.expand(pattern, group.name, hosts.line_of(pattern))
            values = self.vars_block(body, f"host {names[0]}", hosts.line_of(pattern))
            for name in names:
                self.host_vars.setdefault(name, {}).update(values)
                self.host_order[name] = None
            group.hosts.extend(names)

    def expand(self, pattern: Any, group: str, line: int | None) -> list[str]:
        """The host names of a pattern, each checked; refuses patterns that would pass MAX_HOSTS."""
        self.check_name(pattern, "host", group, line, expanded=False)
        problem = range_problem(pattern)
        if problem:
            raise InventoryError(problem, file=self.file, where=f"group {group}", key=printable(pattern), line=line)
        names = expand_range(pattern)
        for name in names:
            self.check_name(name, "host", group, line)
        if len(self.host_order) + sum(n not in self.host_order for n in names) > MAX_HOSTS:
            message = f"more than {MAX_HOSTS} hosts in the inventory (the limit)"
            raise InventoryError(message, file=self.file, where=f"group {group}", key=printable(pattern), line=line)
        return names

    def check_name(self, name: Any, what: str, parent: str | None, line: int | None, expanded: bool = True) -> None:
        where = f"group {parent}" if parent else None
        if not isinstance(name, str):
            message = f"a {what} name must be a string, not {variables.kind_of(name)}"
            raise InventoryError(message, file=self.file, where=where, key=shown(name), line=line)
        problem = variables.name_problem(name, what) if expanded else None
        if problem:
            raise InventoryError(problem, file=self.file, where=where, line=line)

    def vars_block(self, block: Any, where: str, line: int | None) -> dict[str, Any]:
        if block is None:
            return {}
        if not isinstance(block, dict):
            raise InventoryError("variables must be a mapping", file=self.file, where=where, line=line)
        check_vars(block, self.file, where)
        return dict(block)


def _resolve(
    host: str,
    member_of: list[str],
    groups: dict[str, Group],
    host_vars: dict[str, dict[str, Any]],
    vars_files: list[VarsFiles],
    extra_vars: dict[str, Any],
    fallback: Mapping[str, Any],
) -> dict[str, Any]:
    """Combine variables in Ansible's order (later wins, top-level keys replace); `member_of` includes all.

    group_vars/ and host_vars/ come source by source (`vars_files`, in -i order): every source's
    group_vars/all, then every source's files of the other groups, then host_vars/ likewise, as
    ansible-core's vars manager combines them.
    """
    layered: dict[str, Any] = {}
    for name in member_of:
        # ansible_group_priority orders groups; it is not a variable of their hosts.
        layered.update({k: v for k, v in groups[name].vars.items() if k != "ansible_group_priority"})
    for names in (["all"], [name for name in member_of if name != "all"]):
        for files in vars_files:
            for name in names:
                layered.update(files.read("group_vars", name, f"group {name}"))
    layered.update(host_vars.get(host, {}))
    for files in vars_files:
        layered.update(files.read("host_vars", host, f"host {host}"))
    layered.update(extra_vars)
    resolved = {k: copy.deepcopy(v) if isinstance(v, (list, dict)) else v for k, v in variables.defaults().items()}
    resolved.update({k: v for k, v in fallback.items() if not _set_in(layered, k)})
    resolved.update(layered)
    resolved.setdefault("inventory_hostname", host)
    return dict(sorted(resolved.items()))


def _set_in(layered: dict[str, Any], name: str) -> bool:
    """Whether the inventory or -e sets `name` under any of Ansible's spellings of it."""
    return any(spelling in layered for spelling in (name, *connvars.ALIASES.get(name, ())))


def _hosts(
    groups_of: dict[str, list[str]], resolved: dict[str, dict[str, Any]], file: str
) -> tuple[dict[str, Host], list[str]]:
    """The hosts, each with its connection settings read once, and the warnings of those reads, each once, in order.

    A refused connection variable stops here, host by host in file order, before the cross-host rules.
    """
    hosts: dict[str, Host] = {}
    warnings: dict[str, None] = {}
    for name, host_vars in resolved.items():
        connection, found = connvars.read(name, host_vars, file)
        warnings.update(dict.fromkeys(found))
        hosts[name] = Host(name, [g for g in groups_of[name] if g != "all"], host_vars, connection)
    return hosts, list(warnings)


# llama.cpp's head takes at most this many RPC servers (GGML_RPC_MAX_SERVERS in ggml-rpc.h); more fail at load.
MAX_WORKERS = 16


@dataclass(frozen=True)
class Members:
    """The hosts of one cluster: its head and its workers, in inventory order."""

    name: str
    head: Host
    workers: tuple[Host, ...]


def clusters_of(inventory: Inventory) -> dict[str, Members]:
    """Each cluster (the `cluster` variable of heads and workers) with its hosts, in the order of its head."""
    heads = [inventory.hosts[name] for name in inventory.groups.get("head", [])]
    workers = [inventory.hosts[name] for name in inventory.groups.get("workers", [])]
    return {
        head.vars["cluster"]: Members(
            head.vars["cluster"], head, tuple(w for w in workers if w.vars["cluster"] == head.vars["cluster"])
        )
        for head in heads
    }


def _check_cluster(inventory: Inventory) -> None:
    """Cross-host rules: one head per cluster, a head for every worker's cluster, at most MAX_WORKERS workers in
    a cluster, roles not shared by one host, unique address:port."""
    file = inventory.shown
    heads = inventory.groups.get("head", [])
    if not heads:
        raise InventoryError("must have exactly one host, found 0 (none)", file=file, where="group head")
    by_cluster: dict[str, list[str]] = {}
    for name in heads:
        by_cluster.setdefault(inventory.hosts[name].vars["cluster"], []).append(name)
    for cluster, names in by_cluster.items():
        if len(names) > 1:
            raise InventoryError(
                f"must have exactly one host per cluster, found {len(names)} ({', '.join(names)}) in cluster {cluster}:"
                " give each head and its workers their own `cluster`",
                file=file,
                where="group head",
            )
    workers = inventory.groups.get("workers", [])
    for group in ("workers", "balancers"):
        for name in inventory.groups.get(group, []):
            other = "head" if name in heads else "workers" if group == "balancers" and name in workers else None
            if other:
                raise InventoryError(f"is in both {other} and {group}", file=file, where=f"host {name}")
    count: dict[str, list[str]] = {}
    for name in workers:
        count.setdefault(inventory.hosts[name].vars["cluster"], []).append(name)
    for cluster, names in count.items():
        where = "group workers" if list(by_cluster) == [cluster] else f"cluster {cluster}"
        if cluster not in by_cluster:
            raise InventoryError(
                f"has no head: its workers ({shorten(', '.join(names))}) need a host of group head with "
                f"cluster {cluster}",
                file=file,
                where=f"cluster {cluster}",
            )
        if len(names) > MAX_WORKERS:
            raise InventoryError(
                f"{len(names)} hosts, but llama-server takes at most {MAX_WORKERS} RPC workers (GGML_RPC_MAX_SERVERS)",
                file=file,
                where=where,
            )
    seen: dict[tuple[str, int], str] = {}
    for host in inventory.hosts.values():
        key = (host.connection.address, host.connection.port)
        if key in seen:
            raise InventoryError(
                f"same address {host.connection.address}:{host.connection.port} as host {seen[key]}",
                file=file,
                where=f"host {host.name}",
                key="ansible_host",
            )
        seen[key] = host.name


def parse_extra_vars(items: list[str] | None, vault_secrets: VaultSecrets | None = None) -> dict[str, Any]:
    """-e KEY=VALUE (value read as YAML, so 8081 is a number) or -e @file.yml; later wins."""
    result: dict[str, Any] = {}
    for item in items or []:
        if item.startswith("@"):
            result.update(_extra_vars_file(item[1:], vault_secrets))
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InventoryError(f"expected KEY=VALUE or @file.yml, got {shorten(item)!r}", where="-e")
        block = yamlfile.LineDict({key.strip(): yamlfile.loads(value, "-e", vault_secrets) if value else ""})
        check_vars(block, "command line", "-e")
        result.update(block)
    return result


def _extra_vars_file(name: str, vault_secrets: VaultSecrets | None) -> dict[str, Any]:
    if not name:
        raise InventoryError("expected a file name after @", where="-e")
    path = _user_path(name, where="-e")
    data = yamlfile.load(path, vault_secrets)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InventoryError("must be a mapping of variables", file=printable(name), where="-e")
    check_vars(data, printable(name), "-e")
    return dict(data)


def _user_path(name: str, where: str | None) -> Path:
    """`name` with ~ expanded; an unknown ~user is an InventoryError, not a traceback."""
    try:
        return Path(name).expanduser()
    except RuntimeError as exc:  # ~someone who does not exist
        raise InventoryError(f"cannot read: {exc}", file=printable(name), where=where) from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False
