"""One command's streams over an SSH channel: stdin sent once sudo has its password, stdout and stderr drained."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import paramiko

CHUNK = 1 << 18
SPLICE = 1 << 24  # bytes handed to the kernel at once when a file range goes out by sendfile
SUDO_WAIT = 60  # seconds sudo may take to ask for the password or start the command


@dataclass(frozen=True)
class Wrapped:
    """A command line ready to send; with a sudo password, the markers that say when sudo asks or has started."""

    line: str
    password: bytes = field(default=b"", repr=False)
    prompt: bytes = b""
    ready: bytes = b""


class _Stderr:
    """Collects stderr; takes sudo's prompt marker (counted) and the command's ready marker out of it."""

    def __init__(self, prompt: bytes, ready: bytes) -> None:
        self.prompt, self.ready = prompt, ready
        self.markers = [m for m in (prompt, ready) if m]
        self.kept, self.pending = bytearray(), b""
        self.prompts, self.started, self.ended = 0, not ready, False
        self.changed = threading.Condition()

    def feed(self, data: bytes) -> None:
        with self.changed:
            if self.started:
                self.kept += data
                return
            self.pending += data
            self._scan()
            self.changed.notify_all()

    def _scan(self) -> None:
        while not self.started:
            hits = [(self.pending.find(m), m) for m in self.markers if m in self.pending]
            if not hits:
                break
            at, marker = min(hits)
            self.kept += self.pending[:at]
            self.pending = self.pending[at + len(marker) :]
            self.started = marker == self.ready
            self.prompts += marker == self.prompt
        hold = 0 if self.started else max(len(m) for m in self.markers) - 1  # a marker split across reads
        cut = max(0, len(self.pending) - hold)
        self.kept += self.pending[:cut]
        self.pending = self.pending[cut:]

    def end(self) -> None:
        with self.changed:
            self.kept += self.pending
            self.pending, self.ended = b"", True
            self.changed.notify_all()

    def wait(self, answered: int, timeout: float) -> tuple[int, bool, bool]:
        """(prompts seen, started, ended) once sudo asked again, the command started, or stderr ended."""
        with self.changed:
            self.changed.wait_for(lambda: self.started or self.ended or self.prompts > answered, timeout)
            return self.prompts, self.started, self.ended

    def text(self) -> str:
        with self.changed:
            return bytes(self.kept).decode(errors="replace")


class Exchange:
    """One command's streams: stdin written from the caller's thread, stdout and stderr drained by two others."""

    def __init__(
        self, channel: paramiko.Channel, wrapped: Wrapped, sink: BinaryIO, on_sent: Callable[[int], None] | None = None
    ) -> None:
        self.channel, self.wrapped, self.sink = channel, wrapped, sink
        self.on_sent = on_sent  # told how many bytes of stdin went out, as they go
        self.stderr = _Stderr(wrapped.prompt, wrapped.ready)
        self.source_error: OSError | None = None
        self.sink_error: OSError | None = None
        self.note = ""

    def run(self, stdin: bytes | BinaryIO | None) -> None:
        readers = [
            threading.Thread(target=self._drain_stdout, daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for reader in readers:
            reader.start()
        if self._sudo_started():
            self._feed(stdin)
        with contextlib.suppress(OSError, EOFError):
            self.channel.shutdown_write()
        for reader in readers:
            reader.join()

    def _sudo_started(self) -> bool:
        """Whether the command runs: sudo got the password if (and only if) it asked for it, or needed none.

        A command that announces itself (a ready marker) is fed only once it did.
        """
        if not self.wrapped.ready:
            return True
        answered = 0
        while True:
            prompts, started, ended = self.stderr.wait(answered, SUDO_WAIT)
            if started or ended:
                return started
            if prompts > answered and answered:  # asked again: wrong password; the end of stdin makes sudo stop
                return False
            if prompts == answered:
                asked = (
                    "sudo neither asked for the password nor started" if self.wrapped.password else "nothing started"
                )
                self.note = f"\n{asked} the command within {SUDO_WAIT} s"
                return False
            answered = prompts
            if not self._send(self.wrapped.password):
                return False

    def _feed(self, stdin: bytes | BinaryIO | None) -> None:
        if isinstance(stdin, bytes):
            self._send(stdin)
            return
        send_file = getattr(self.channel, "send_file", None)
        if send_file is not None and isinstance(stdin, (Limited, Ranges)):
            self._splice(send_file, stdin)
            return
        while stdin is not None:
            try:
                chunk = stdin.read(CHUNK)
            except OSError as exc:
                self.source_error = exc  # stop here: the host sees a short stream
                return
            if not chunk or not self._send(chunk):
                return
            if self.on_sent is not None:
                self.on_sent(len(chunk))

    def _splice(self, send_file, stdin: Limited | Ranges) -> None:
        """File ranges straight from the page cache into the channel (no copy through Python)."""
        for handle, offset, size in stdin.spans():
            for at in range(offset, offset + size, SPLICE):
                want = min(SPLICE, offset + size - at)
                try:
                    sent = send_file(handle, at, want)
                except OSError:
                    return  # the channel closed: the command exited without reading it all, or the link died
                if self.on_sent is not None:
                    self.on_sent(sent)
                if sent < want:
                    name = getattr(handle, "name", "source")
                    self.source_error = OSError(f"{name} ends {offset + size - at - sent} bytes before the range")
                    return

    def _send(self, data: bytes) -> bool:
        """False when the channel is closed (the command exited without reading it all, or the link died)."""
        try:
            self.channel.sendall(data)
        except (OSError, EOFError):
            return False
        return True

    def _drain_stdout(self) -> None:
        while data := _receive(self.channel.recv):
            if self.sink_error is None:
                try:
                    self.sink.write(data)
                except OSError as exc:
                    self.sink_error = exc  # keep draining, or the command would block on a full window

    def _drain_stderr(self) -> None:
        while data := _receive(self.channel.recv_stderr):
            self.stderr.feed(data)
        self.stderr.end()


def _receive(receive) -> bytes:
    try:
        return receive(CHUNK)
    except (OSError, EOFError):
        return b""


class Limited:
    """Reads at most `size` bytes of `source` (a file that grew meanwhile does not overrun the upload)."""

    def __init__(self, source: BinaryIO, size: int) -> None:
        self.source, self.left = source, size

    def read(self, count: int) -> bytes:
        data = self.source.read(min(count, self.left)) if self.left else b""
        self.left -= len(data)
        return data

    def spans(self) -> Iterator[tuple[BinaryIO, int, int]]:
        """What is left to read, as (file, offset, size), consumed."""
        left, self.left = self.left, 0
        if left:
            yield self.source, self.source.tell(), left


class Ranges:
    """Reads the (offset, size) ranges of a file one after another, as one stream."""

    def __init__(self, source: BinaryIO, ranges: tuple[tuple[int, int], ...]) -> None:
        self.source, self.ranges, self.left = source, list(ranges), 0

    def read(self, count: int) -> bytes:
        while not self.left and self.ranges:
            offset, self.left = self.ranges.pop(0)
            self.source.seek(offset)
        data = self.source.read(min(count, self.left)) if self.left else b""
        if self.left and not data:
            raise OSError(f"{getattr(self.source, 'name', 'source')} ends before the range to send")
        self.left -= len(data)
        return data

    def spans(self) -> Iterator[tuple[BinaryIO, int, int]]:
        """The ranges still to read, as (file, offset, size), consumed."""
        if self.left:
            yield self.source, self.source.tell(), self.left
            self.left = 0
        while self.ranges:
            offset, size = self.ranges.pop(0)
            yield self.source, offset, size


class HashingWriter:
    """Writes to a file while counting and hashing what went through."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.size, self._digest = handle, 0, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
