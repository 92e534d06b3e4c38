"""`invoke logs`: the journal of llamafleet's units, each line prefixed with its host; -f merges hosts live."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from . import cluster, paths
from .errors import UsageError
from .shell import quote

if TYPE_CHECKING:
    from .inventory import Host, Inventory
    from .runner import Runner

UNITS = {"rpc": paths.RPC_UNIT, "head": paths.SERVER_UNIT}
MAX_LINES = 100_000
FOLLOW_SECONDS = 86400  # journalctl -f ends on the host after a day at the latest


def show(inv: Inventory, connect: Callable[[], Runner], unit: str | None, count: int, follow: bool) -> int:
    """Print the journal of the head's and the workers' units (`unit`: one of UNITS, or each host's own); exit code.

    Without `follow` each host's lines are kept and printed together, host after host in inventory order.
    """
    fleet = cluster.fleet(inv)
    wanted = {name: found for view in fleet.clusters for name, found in _units(view, unit).items()}
    runner = connect()
    order = list(wanted)
    hosts = sorted((h for h in runner.hosts if h.name in wanted), key=lambda h: order.index(h.name))
    if not hosts:
        runner.close()
        limit = runner.options.limit
        raise UsageError(f"no host of {limit or 'the inventory'} runs {unit and UNITS[unit] or 'a unit'}")
    width = max(len(h.name) for h in hosts)
    lock = threading.Lock()
    buffers = {h.name: io.StringIO() for h in hosts}

    def read(host: Host) -> None:
        sink = Prefixed(host.name, width, sys.stdout if follow else buffers[host.name], lock)
        journalctl = command(wanted[host.name], count, follow)
        runner.remote(host, journalctl, stdout=sink, timeout=FOLLOW_SECONDS if follow else None)
        sink.close()

    try:
        if follow:
            _follow(runner, hosts, read)
        else:
            runner.each_host(hosts, read)
    finally:
        runner.close()
    for host in hosts:
        sys.stdout.write(buffers[host.name].getvalue())
    for result in runner.output.results:
        print(f"{result.host}: {result.status}: {result.reason}", file=sys.stderr)
    return runner.exit_code()


def _units(view: cluster.Cluster, unit: str | None) -> dict[str, str]:
    """host -> the unit whose journal is shown: llama-server on the head, llama-rpc on the workers (or one of them)."""
    wanted = {view.head: paths.SERVER_UNIT} if unit != "rpc" else {}
    if unit != "head":
        wanted.update({w.name: paths.RPC_UNIT for w in view.workers})
    return wanted


def _follow(runner: Runner, hosts: list[Host], read: Callable[[Host], None]) -> None:
    """Every host's journal at once until Ctrl-C (the connections close, and journalctl with them)."""
    threads = [threading.Thread(target=runner.each_host, args=([h], read), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        print("", file=sys.stderr)


def command(unit: str, lines: int, follow: bool) -> str:
    """journalctl for one unit: the last `lines` lines, then (follow) new ones as they come."""
    return quote("journalctl --no-pager -o short-iso -u %s -n %s", unit, lines) + (" -f" if follow else "")


class Prefixed:
    """A sink for a command's stdout: whole lines, each printed once with the host in front (thread-safe)."""

    def __init__(self, host: str, width: int, stream: TextIO, lock: threading.Lock) -> None:
        self.prefix = f"{host:<{width}} | "
        self.stream, self.lock = stream, lock
        self.rest = b""

    def write(self, data: bytes) -> int:
        *whole, self.rest = (self.rest + data).split(b"\n")
        if whole:
            text = "".join(f"{self.prefix}{line.decode(errors='replace')}\n" for line in whole)
            with self.lock:
                self.stream.write(text)
                self.stream.flush()
        return len(data)

    def close(self) -> None:
        if self.rest:
            self.write(b"\n")
