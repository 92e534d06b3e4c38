"""`invoke logs`: the journal of llamafleet's units, each line prefixed with its host; -f merges hosts live."""

from __future__ import annotations

import threading
from typing import TextIO

from . import paths
from .shell import quote

UNITS = {"rpc": paths.RPC_UNIT, "head": paths.SERVER_UNIT}
MAX_LINES = 100_000


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
