"""Downloads into the controller's cache: streamed, resumed with HTTP Range, sha256 recorded and checked on reuse."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from . import redaction
from .controller_cache import cache_root, private_dir
from .errors import OperationError
from .operations.files import source_sha256

if TYPE_CHECKING:  # imported when a download starts: runs that fetch nothing do not pay for it
    import requests

TIMEOUT = (10, 120)
CHUNK = 1 << 20
PROGRESS_EVERY = 5.0  # seconds between progress lines when the output is not a terminal


class Progress:
    """Bytes received of a download: a live line on a terminal, timestamped lines every few seconds otherwise."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label, self.total, self.stream = label, total, stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = self.shown = time.monotonic()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.shown >= (0.2 if self.live else PROGRESS_EVERY):
            self.shown = now
            self._show(end="\r" if self.live else "\n")

    def finish(self) -> None:
        self._show(end="\n")

    def _show(self, end: str) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        of = f" of {self.total / 1e6:.1f} MB ({100 * self.done / self.total:.0f}%)" if self.total else ""
        line = f"{self.label}: {self.done / 1e6:.1f} MB{of}, {self.done / 1e6 / seconds:.1f} MB/s"
        stamp = "" if self.live else time.strftime("%H:%M:%S ")
        self.stream.write(f"{stamp}{line}{end}")
        self.stream.flush()


def slot(url: str) -> Path:
    """The cache folder of one URL (private to the controller's user)."""
    return private_dir(cache_root() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16])


def fetch(
    url: str,
    target: Path,
    *,
    headers: Mapping[str, str] | None = None,
    check: Callable[[bytes], None] | None = None,
    progress: bool = False,
) -> str:
    """`target` holds what `url` serves; returns its sha256 (recorded beside it as TARGET.sha256).

    A finished download is reused after its recorded sha256 is checked. An unfinished one (TARGET.part) is
    resumed with a Range request; a server that ignores Range sends everything again. `check` sees the
    first bytes and may refuse them (raise) before the rest is fetched. `headers` (a token) are never shown, nor
    the URL's user, password or query (a presigned URL's signature): messages show redaction.url_shown(url).
    """
    recorded = target.with_name(target.name + ".sha256")
    if target.is_file():
        return check_recorded(target, recorded)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    import requests

    try:
        _receive(url, partial, digest, dict(headers or {}), check, progress)
    except requests.RequestException as exc:  # the part is kept: the next run resumes it
        shown = redaction.url_shown(url)
        raise OperationError(f"download of {shown} failed: {_reason(exc)}; run again to resume it") from None
    except UnicodeError:  # requests sends a user and password as Latin-1, a host name as IDNA
        raise OperationError(
            f"download of {redaction.url_shown(url)} failed: its user, password or host name cannot be sent as "
            "written (non-Latin-1 text once %-decoded, or a host name that is not one)"
        ) from None
    except BaseException:  # refused by `check`, or interrupted: what arrived is no use
        partial.unlink(missing_ok=True)
        raise
    recorded.write_text(f"{digest.hexdigest()}  {target.name}\n")
    os.replace(partial, target)
    return digest.hexdigest()


def _receive(url, partial: Path, digest, headers: dict, check, progress: bool) -> None:
    have = partial.stat().st_size if partial.is_file() else 0
    if have:
        headers["Range"] = f"bytes={have}-"
    import requests

    with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as response:
        if have and response.status_code == 416:  # nothing left to send: the part is complete
            _hash_file(partial, digest, check)
            return
        response.raise_for_status()
        if have and not _resumes(response, have):
            have = 0  # the server ignored Range and sends the whole file again
        with partial.open("ab" if have else "wb") as handle:
            if have:
                _hash_file(partial, digest, check)
            _stream(response, handle, digest, None if have else check, _meter(url, response, have, progress))


def _resumes(response: requests.Response, have: int) -> bool:
    span = response.headers.get("Content-Range", "")
    return response.status_code == 206 and span.startswith(f"bytes {have}-")


def _meter(url: str, response: requests.Response, have: int, show: bool) -> Progress | None:
    if not show:
        return None
    length = response.headers.get("Content-Length")
    total = have + int(length) if length and length.isdigit() else None
    meter = Progress(urlsplit(url).path.rsplit("/", 1)[-1], total)  # the file's name: no query, no password
    meter.done = have
    return meter


def _stream(response, handle, digest, check, meter: Progress | None) -> None:
    done = meter.done if meter else 0
    for chunk in response.iter_content(CHUNK):
        if check is not None:
            check(chunk)
            check = None
        digest.update(chunk)
        handle.write(chunk)
        done += len(chunk)
        if meter:
            meter.update(done)
    if meter:
        meter.finish()


def _hash_file(path: Path, digest, check) -> None:
    with path.open("rb") as handle:
        first = True
        while chunk := handle.read(CHUNK):
            if first and check is not None:
                check(chunk)
            first = False
            digest.update(chunk)


def check_recorded(path: Path, recorded: Path) -> str:
    """A cached download must still be what arrived; anything else is refused, never pushed."""
    expected = recorded.read_text().split()[0] if recorded.is_file() else None
    actual = source_sha256(path)
    if actual != expected:
        raise OperationError(
            f"download cache entry {path} changed since it was fetched (sha256 {actual[:12]}, "
            f"recorded {(expected or 'nothing')[:12]}); delete it to download it again"
        )
    return actual


def _reason(exc: requests.RequestException) -> str:
    """Why a request failed, without the URL's user, password or query that requests' own messages quote."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason}"
    return type(exc).__name__ if not str(exc) else redaction.text_shown(str(exc).split("(Caused by", 1)[0].strip())
