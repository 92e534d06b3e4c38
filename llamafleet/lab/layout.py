"""Which hosts a lab has: names, groups and clusters from --clusters, --workers and --balancers."""

from __future__ import annotations

from dataclasses import dataclass

from .limits import SUBNET_HOSTS
from .paths import MAX_WORKERS
from .system import LabError


@dataclass(frozen=True)
class PlannedHost:
    """One host a lab will have: its name, its inventory group and its cluster (None: the default cluster)."""

    name: str
    group: str
    cluster: str | None = None


def whole_number(flag: str, value: object, least: int, most: int) -> int:
    """value when it is an int from least to most (a bool is not); else a one-line LabError naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise LabError(f"{flag} {value!r}: use a whole number from {least} to {most}")
    return value


def plan(clusters: int = 1, workers: int = 2, balancers: int = 0) -> list[PlannedHost]:
    """The lab's hosts in address order: each cluster's head and workers, then the balancers lb1..lbB.

    One cluster keeps the names head, w1..wM and no cluster; several are c1-head, c1-w1.. with cluster c1, ...
    At most SUBNET_HOSTS hosts in all (one /24), else one line saying how many were asked.
    """
    clusters = whole_number("--clusters", clusters, 1, SUBNET_HOSTS)
    workers = whole_number("--workers", workers, 0, MAX_WORKERS)
    balancers = whole_number("--balancers", balancers, 0, SUBNET_HOSTS)
    total = clusters * (1 + workers) + balancers
    if total > SUBNET_HOSTS:
        raise LabError(
            f"--clusters {clusters} --workers {workers} --balancers {balancers} make {total} hosts; "
            f"a lab's /24 holds {SUBNET_HOSTS}: use fewer"
        )
    hosts = [host for index in range(1, clusters + 1) for host in _cluster(index, workers, clusters > 1)]
    return hosts + [PlannedHost(f"lb{index}", "balancers") for index in range(1, balancers + 1)]


def _cluster(index: int, workers: int, named: bool) -> list[PlannedHost]:
    cluster = f"c{index}" if named else None
    prefix = f"{cluster}-" if cluster else ""
    head = PlannedHost(f"{prefix}head", "head", cluster)
    return [head, *(PlannedHost(f"{prefix}w{number}", "workers", cluster) for number in range(1, workers + 1))]
