"""What a run prints: one line per operation as it happens, a recap per host, or one JSON document."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

COUNTED = ("ok", "changed", "failed", "unreachable", "skipped")


@dataclass
class OpResult:
    """The outcome of one operation on one host."""

    host: str
    role: str
    operation: str
    status: str  # ok | changed | failed | unreachable | skipped
    reason: str = ""
    steps: list[str] = field(default_factory=list)
    diff: str | None = None
    error: dict[str, Any] | None = None


class Output:
    """Collects results (thread-safe) and prints them unless the run wants JSON."""

    def __init__(self, *, json_mode: bool = False, check: bool = False, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.check = check
        self.stream = stream or sys.stdout
        self.results: list[OpResult] = []
        self.recap: dict[str, Counter] = {}
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def add_host(self, host: str) -> None:
        with self._lock:
            self.recap.setdefault(host, Counter())

    def record(self, result: OpResult) -> None:
        with self._lock:
            self.results.append(result)
            self.recap.setdefault(result.host, Counter())[result.status] += 1
            if not self.json_mode:
                self._print_result(result)

    def _print_result(self, r: OpResult) -> None:
        label = "would change" if self.check and r.status == "changed" else r.status
        line = f"{label:<12} {r.host:<12} {r.role}: {r.operation}"
        if r.reason:
            line += f"  ({r.reason})"
        print(line, file=self.stream, flush=True)
        if r.diff:
            print(r.diff.rstrip("\n"), file=self.stream, flush=True)
        if r.error and r.error.get("output"):
            for tail in r.error["output"].splitlines()[-15:]:
                print(f"{'':<12} {r.host:<12} | {tail}", file=self.stream)

    def say(self, message: str) -> None:
        with self._lock:
            self.messages.append(message)
            if not self.json_mode:
                print(message, file=self.stream, flush=True)

    def finish(self, exit_code: int, extra: dict[str, Any] | None = None) -> None:
        """Print the recap (or the JSON document)."""
        recap = {h: {k: c.get(k, 0) for k in COUNTED} for h, c in self.recap.items()}
        if self.json_mode:
            doc = {
                "recap": recap,
                "results": [asdict(r) for r in self.results],
                "messages": self.messages,
                "check": self.check,
                "exit_code": exit_code,
                **(extra or {}),
            }
            print(json.dumps(doc, indent=2), file=self.stream)
            return
        print("\nRECAP", file=self.stream)
        for host, counts in recap.items():
            cells = "  ".join(f"{k}={counts[k]:<3}" for k in COUNTED[:4])
            print(f"{host:<14} {cells}", file=self.stream)
