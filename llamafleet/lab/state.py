"""What a lab is made of (LabInfo, LabHost) and its state file, so `down` can undo a crash."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from .paths import lab_dir
from .system import pid_alive

STATE_FILE = "state.json"
PID_FILE = "nspawn.pid"
INIT_PID_FILE = "init.pid"


@dataclasses.dataclass
class LabHost:
    """One lab host: its names, address, processes and where its root lives."""

    name: str
    group: str
    machine: str
    address: str
    firewall: str = "none"
    pid: int | None = None
    init_pid: int | None = None
    veth: str | None = None
    dir: str = ""
    cluster: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.dir) / "root"

    @property
    def log(self) -> Path:
        return Path(self.dir) / "console.log"

    @property
    def running(self) -> bool:
        return pid_alive(self.pid)

    @property
    def role(self) -> str:
        """head, worker or balancer, with the cluster when the lab has several: `head of c2`."""
        role = {"head": "head", "workers": "worker", "balancers": "balancer"}.get(self.group, self.group)
        return f"{role} of {self.cluster}" if self.cluster else role


@dataclasses.dataclass
class LabInfo:
    """A lab: network, generated files and hosts (each cluster's head and workers, then the balancers)."""

    name: str
    subnet: str
    bridge: str
    nft_table: str
    inventory: str
    known_hosts: str
    key: str
    hosts: list[LabHost]
    link_rate: str | None = None
    link_delay: str | None = None
    link_mtu: int | None = None
    base: str = ""

    @property
    def gateway(self) -> str:
        return self.subnet.rsplit(".", 1)[0] + ".1"

    def host(self, name: str) -> LabHost:
        """The host named `name` (KeyError when the lab has none)."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def addresses(self) -> dict[str, str]:
        return {host.name: host.address for host in self.hosts}


def save(info: LabInfo) -> None:
    """Write the state file atomically."""
    path = lab_dir(info.name) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(info), indent=1))
    os.replace(tmp, path)


def load(name: str) -> LabInfo | None:
    """The recorded lab, or None when there is no readable state file."""
    try:
        data = json.loads((lab_dir(name) / STATE_FILE).read_text())
        hosts = [LabHost(**host) for host in data.pop("hosts")]
        return LabInfo(hosts=hosts, **data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    path.write_text(f"{pid}\n")
