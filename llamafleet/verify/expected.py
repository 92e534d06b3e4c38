"""What each host should look like, derived from the inventory by the same code the roles use to make it so."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from llamafleet import cluster, paths
from llamafleet.controller_cache import cache_root
from llamafleet.errors import InventoryError
from llamafleet.inventory import Host, Inventory
from llamafleet.roles.base import settings as base_settings
from llamafleet.roles.firewall import role as firewall_role
from llamafleet.roles.firewall import rules as firewall_rules
from llamafleet.roles.head import role as head_role
from llamafleet.roles.llama_cpp import artifacts, cmake, groups, identity
from llamafleet.roles.llama_cpp import settings as llama_cpp_settings
from llamafleet.roles.rpc_worker import role as worker_role

from .probes import HARDENING

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
ANY_NETWORKS = ("0.0.0.0/0", "::/0")
FIREWALL_LOOK = "`invoke provision` rewrites the rules; on the host: nft list table inet llamafleet | ufw status"


@dataclass(frozen=True)
class Journal:
    """Where to look next about a unit on a host: the journal command and the unit file."""

    host: str
    unit: str

    def __str__(self) -> str:
        return f"journalctl -u {self.unit} -n 50 on {self.host}; unit file {paths.UNIT_DIR}/{self.unit}"


class Expectations:
    """The inventory's promises about every host, computed lazily and once per run."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.file = str(inventory.path)
        self.fleet = cluster.fleet(inventory)
        self.heads = {
            view.head: head_role.settings.settings(inventory.hosts[view.head], self.file)
            for view in self.fleet.clusters
        }
        self.workers = {host.name: worker_role.settings.settings(host, self.file) for host in inventory.workers}
        self.llama = {name: llama_cpp_settings.settings(host) for name, host in inventory.hosts.items()}
        self._keys: dict[Path, bytes | None] = {}

    def role_of(self, host: Host) -> str:
        if host.name in self.heads:
            return "head"
        if host.name in self.workers:
            return "worker"
        return "balancer" if host.name in self.balancers else "other"

    # -- balancers ------------------------------------------------------------------------------
    @cached_property
    def balancers(self) -> dict[str, Any]:
        """Each balancer's settings (role balancer's)."""
        from llamafleet.roles.balancer import settings as balancer_settings

        names = [balancer.name for balancer in self.fleet.balancers]
        return {name: balancer_settings.settings(self.inventory.hosts[name], self.file) for name in names}

    def endpoint_probe(self, host: Host) -> tuple[str, int]:
        """Where a balancer asks its own endpoint (loopback when it listens on every address)."""
        balancer = self.balancers[host.name]
        address = "127.0.0.1" if balancer.balancer_host == "0.0.0.0" else balancer.balancer_host  # noqa: S104
        return address, balancer.balancer_port

    def head_api(self, view: cluster.Cluster) -> str:
        """The head's API as a balancer reaches it: ip:port (through the tunnel, when its cluster has one)."""
        return f"{view.api_address}:{view.api_port}"

    @staticmethod
    def head_api_outside(view: cluster.Cluster) -> str:
        """The head's API at its address outside any tunnel: ip:port."""
        return f"{view.api_host_address}:{view.api_port}"

    def outside_of_balancer(self, host: Host) -> str | None:
        """A head or worker the balancer's port must refuse (its address outside the balancer's allow), if any."""
        allow = [ipaddress.ip_network(item) for item in self.fleet.balancer(host.name).allow]
        for view in self.fleet.clusters:
            own = ((view.head, view.head_host_address), *((w.name, w.host_address) for w in view.workers))
            for name, address in own:
                if not any(ipaddress.ip_address(address) in network for network in allow):
                    return name
        return None

    def view(self, host: Host | str) -> cluster.Cluster:
        """The cluster of a head or worker."""
        found = self.fleet.of(host if isinstance(host, str) else host.name)
        if found is None:
            raise KeyError(host)
        return found

    # -- the head ---------------------------------------------------------------------------
    def head_settings(self, host: Host | str) -> Any:
        """The settings of the head of the host's cluster."""
        return self.heads[self.view(host).head]

    def key_file(self, host: Host | str) -> Path:
        """The controller's API key file, found as the head role finds it (api_key_file, else <inventory>.api-key)."""
        return Path(self.head_settings(host).api_key_file)

    def key(self, host: Host | str) -> bytes | None:
        """The key line as the head holds it (first line + newline), None when the controller has no key file."""
        path = self.key_file(host)
        if path not in self._keys:
            try:
                self._keys[path] = head_role.read_key(path)
            except InventoryError:
                self._keys[path] = None
        return self._keys[path]

    def key_sha256(self, host: Host | str) -> str | None:
        key = self.key(host)
        return hashlib.sha256(key).hexdigest() if key else None

    def api_probe(self, host: Host | str) -> tuple[str, int]:
        """Where the head reaches its own API (loopback when it listens on every address)."""
        head = self.head_settings(host)
        return head_role.probe_address(head), head.api_port

    def seeded_entries(self, sha256: str | None) -> int | None:
        """How many cache entries seeding gives a worker for the model with this sha256 (its tensors over
        10 MiB), from the record deploy keeps in the controller's cache; None when there is no record."""
        if not sha256:
            return None
        try:
            return len(json.loads((cache_root() / "tensors" / f"{sha256}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def model_alias(self, host: Host, record: dict[str, str] | None) -> str | None:
        """The id /v1/models lists: model_alias, else the path of the deployed file on the head."""
        name = (record or {}).get("name")
        return self.head_settings(host).model_alias or (head_role.model_path(name) if name else None)

    # -- units ---------------------------------------------------------------------------------
    def unit(self, host: Host) -> str:
        return paths.SERVER_UNIT if host.name in self.heads else paths.RPC_UNIT

    def unit_text(self, host: Host) -> str:
        if host.name in self.heads:
            behind = bool(self.fleet.balancers)
            return head_role.files(host, self.view(host), self.file, behind_balancers=behind)[head_role.UNIT_PATH]
        return worker_role.files(host, self.view(host), self.file)[worker_role.UNIT_PATH]

    def hardening(self, host: Host) -> dict[str, frozenset[str]]:
        """The sandbox properties the host's unit sets, normalised as `systemctl show` reports them."""
        return unit_hardening(self.unit_text(host))

    # -- workers, firewall, reachability ---------------------------------------------------------
    def worker(self, host: Host) -> cluster.Worker:
        return self.view(host).worker(host.name)

    def cache_limit(self, host: Host) -> int | None:
        return size_bytes(self.workers[host.name].rpc_cache_max_size)

    def outsider_of(self, worker: str) -> str | None:
        """The worker that probes `worker`'s RPC port from outside the head: the next one of its cluster in
        inventory order."""
        view = self.fleet.of(worker)
        names = [w.name for w in view.workers] if view else []
        if len(names) < 2 or worker not in names:
            return None
        return names[(names.index(worker) + 1) % len(names)]

    @property
    def all_workers(self) -> tuple[cluster.Worker, ...]:
        return tuple(worker for view in self.fleet.clusters for worker in view.workers)

    @staticmethod
    def underlay_endpoint(worker: cluster.Worker) -> str:
        """A tunnelled worker's RPC port at its own (not its tunnel) address."""
        return f"{worker.underlay}:{worker.port}"

    def api_prober(self, view: cluster.Cluster) -> str | None:
        """With balancers, the host that checks the head's API is closed to all but them: its first worker."""
        return view.workers[0].name if self.fleet.balancers and view.workers else None

    def probed_by(self, host: Host) -> tuple[str, ...]:
        """Endpoints this host probes: every worker's of its cluster from a head; the previous worker's from a
        worker (and with balancers, the first worker its head's API, and the balancers' ports it must not reach);
        every head's API from a balancer (and, for a head it reaches through the tunnel, its API outside it)."""
        if host.name in self.balancers:  # and a head reached through the tunnel, at its own address: closed
            found = [self.head_api(view) for view in self.fleet.clusters]
            return (*found, *(self.head_api_outside(view) for view in self.fleet.clusters if view.api_underlay))
        view = self.fleet.of(host.name)
        if host.name in self.heads:  # with a tunnel, also each worker's RPC port on its own address: closed
            found = [w.endpoint for w in self.view(host).workers]
            found += [self.underlay_endpoint(w) for w in self.view(host).workers if w.underlay]
        else:
            found = [w.endpoint for w in self.all_workers if self.outsider_of(w.name) == host.name]
            if view is not None and self.api_prober(view) == host.name:
                found.append(self.head_api_outside(view))
        for name, balancer in self.balancers.items():
            if self.outside_of_balancer(self.inventory.hosts[name]) == host.name:
                found.append(f"{self.fleet.balancer(name).address}:{balancer.balancer_port}")
        return tuple(found)

    @cached_property
    def firewall_rulesets(self) -> dict[str, Any]:
        return firewall_rules.rulesets(self.fleet, self.inventory)

    def firewall_operations(self, host: Host, found_frontends: Any = None) -> list:
        """The firewall role's operations for the host's frontend (for `auto`, every frontend's until known)."""
        choice = firewall_role.frontend_choice(host)
        ruleset = self.firewall_rulesets[host.name]
        if choice == "none":
            return []
        if choice == "auto" and found_frontends is None:
            return [op for name in firewall_role.FRONTENDS for op in firewall_role.frontend_operations(name, ruleset)]
        return firewall_role.frontend_operations(firewall_role.choose_frontend(choice, found_frontends), ruleset)

    # -- llama.cpp --------------------------------------------------------------------------------
    def llama_settings(self, host: Host):
        return self.llama[host.name]

    def release_id(self, host: Host, os_info: dict[str, str], cpu_flags: list[str]) -> str | None:
        """The release directory provision installs for a source build (None for official releases)."""
        settings = self.llama_settings(host)
        if settings.install != "build":
            return None
        source = self.source_sha256(settings)
        signature = groups.cpu_signature(" ".join(cpu_flags).split())
        group = groups.platform_group(settings, os_info["id"], os_info["version_id"], os_info["arch"], signature)
        args = cmake.cmake_args(
            settings.version, source, settings.backend, settings.cpu_variants, settings.cmake_args, settings.gpu_targets
        )
        return groups.release_id(settings.version, settings.backend, groups.artifact_cache_key(source, args, group))

    def source_sha256(self, settings) -> str:
        if not settings.source_archive:
            return settings.source_sha256 or ""
        path = Path(settings.source_archive).expanduser()
        path = path if path.is_absolute() else self.inventory.path.parent / path
        return _file_sha256(str(path))


def build_manifest(lines: list[str]) -> dict[str, Any] | None:
    """A host's running BUILD.json with the sha256 of its files measured now (llama_cpp's IDENTITY fact)."""
    text = "\n".join(lines)
    if "@@files" not in text:
        return None
    manifest, _, measured = text.partition("@@files")
    try:
        return identity.with_measured_files(json.loads(manifest), measured)
    except ValueError:
        return {"version": "unreadable BUILD.json", "files": {}}


@cache
def _file_sha256(path: str) -> str:
    try:
        return artifacts.sha256_file(Path(path))
    except OSError:
        return "unreadable"


def size_bytes(text: str | None) -> int | None:
    """rpc_cache_max_size (20G, 512M, 1024) in bytes; None when unbounded."""
    if not text:
        return None
    unit = text[-1] if text[-1] in SIZE_UNITS else ""
    return int(text[: len(text) - len(unit)]) * SIZE_UNITS[unit]


def unit_hardening(unit_text: str) -> dict[str, frozenset[str]]:
    """Key -> normalised value of every HARDENING setting of a unit's [Service] section (repeats add up)."""
    found: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in HARDENING:
            found.setdefault(key, []).append(value)
    return {key: normalise(key, " ".join(values)) for key, values in found.items()}


def normalise(key: str, value: str) -> frozenset[str]:
    """A property as a set of words, addresses in CIDR form (`systemctl show` writes 10.0.0.1/32, ::1/128)."""
    words = value.split()
    if key not in ("IPAddressAllow", "IPAddressDeny"):
        return frozenset(words)
    networks: set[str] = set()
    for word in words:
        if word == "any":
            networks.update(ANY_NETWORKS)
        elif word == "localhost":
            networks.update(LOOPBACK_NETWORKS)
        else:
            networks.add(str(ipaddress.ip_network(word, strict=False)))
    return frozenset(networks)


def seeded_sizes(sha256: str | None) -> dict[str, int] | None:
    """Entry name -> size in bytes of every cache entry seeding gives a worker for the model with this sha256 (its
    tensors over 10 MiB, as deploy recorded them in the controller's cache); None when there is no such record."""
    if not sha256:
        return None
    try:
        saved = json.loads((cache_root() / "tensors" / f"{sha256}.json").read_text())
        return {str(name): int(size) for _, name, _, size in saved}
    except (OSError, ValueError, TypeError):
        return None


def service_user(expect: Expectations, host: Host) -> str:
    """llamafleet_user on the host: who runs the services (and verify's probes that need no root)."""
    return base_settings.settings(host, expect.file).user
