"""Live progress of long steps (builds, transfers, waits) on stderr, so --json output stays clean.

On a terminal one line per step is rewritten in place; otherwise (CI logs) a timestamped line is
printed when the step starts, at most every `every` seconds while it advances, and when it ends.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from typing import TextIO

# make prints "[ 45%] Building CXX object ...", ninja "[123/456] Building CXX object ...".
PERCENT = re.compile(rb"^\[\s*(\d{1,3})%\]")
STEPS = re.compile(rb"^\[(\d+)/(\d+)\]")
_LOCK = threading.Lock()  # several hosts report at once: whole lines only


class Progress:
    """One long step's progress: `update(done, total)` as it goes, `finish(note)` at the end."""

    def __init__(self, label: str, stream: TextIO | None = None, every: float = 30.0) -> None:
        self.label, self.stream, self.every = label, stream or sys.stderr, every
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.shown = time.monotonic()
        self.last = ""
        self._say(f"{label}: started")

    def update(self, done: float, total: float | None = None, unit: str = "") -> None:
        now = time.monotonic()
        text = _fraction(done, total, unit)
        if text == self.last or (not self.tty and now - self.shown < self.every):
            return
        self.last, self.shown = text, now
        self._say(f"{self.label}: {text}, {_elapsed(now - self.started)}")

    def finish(self, note: str = "done") -> None:
        self._say(f"{self.label}: {note} after {_elapsed(time.monotonic() - self.started)}", end=True)

    def _say(self, text: str, end: bool = False) -> None:
        with _LOCK:
            if self.tty:
                self.stream.write(f"\r\033[K{text}" + ("\n" if end else ""))
            else:
                self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self.stream.flush()


class Sending:
    """Progress of bytes going to a host (a model, cache entries): MB sent of the total and the rate.

    Shown only for transfers of at least `shown_from` bytes; smaller ones are over before a line would help.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None = None, shown_from: int = 32 << 20) -> None:
        self.total, self.done, self.looked = total, 0, 0.0
        self.progress = Progress(label, stream, every=5.0) if total >= shown_from else None

    def sent(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.progress is None or now - self.looked < 0.25:  # a terminal line at most 4 times a second
            return
        self.looked = now
        rate = self.done / max(now - self.progress.started, 1e-6) / 1e6
        self.progress.update(self.done // 1_000_000, self.total // 1_000_000, f" MB, {rate:.0f} MB/s")

    def __enter__(self) -> Sending:
        return self

    def __exit__(self, kind, *_: object) -> None:
        if self.progress is not None:
            self.progress.finish(f"{self.done / 1e6:.0f} MB sent" if kind is None else "failed")


class CommandProgress:
    """A sink for a long command's stdout: build steps become progress; the last lines are kept for errors."""

    def __init__(self, label: str, stream: TextIO | None = None, keep: int = 40) -> None:
        self.progress = Progress(label, stream)
        self.lines: deque[bytes] = deque(maxlen=keep)
        self.rest = b""

    def write(self, data: bytes) -> int:
        *whole, self.rest = (self.rest + data).split(b"\n")
        for line in whole:
            self.lines.append(line)
            if found := STEPS.match(line):
                self.progress.update(int(found[1]), int(found[2]), " steps")
            elif found := PERCENT.match(line):
                self.progress.update(int(found[1]), 100, "%")
        return len(data)

    def tail(self) -> str:
        return b"\n".join([*self.lines, self.rest]).decode(errors="replace").strip() + "\n"

    def close(self, ok: bool) -> None:
        self.progress.finish("done" if ok else "failed")


def _fraction(done: float, total: float | None, unit: str) -> str:
    if unit == "%":
        return f"{done:.0f}%"
    if total:
        return f"{done:.0f}/{total:.0f}{unit}"
    return f"{done:.0f}{unit}"


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
