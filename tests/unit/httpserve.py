"""A loopback HTTP server for download tests: serves files from memory, with or without Range, and can cut
a response short (a link that drops mid-download)."""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Served:
    """What the server holds and how it behaves; `requests` records (path, headers) of every request."""

    files: dict[str, bytes]
    ranges: bool = True
    cut_after: int | None = None  # bytes of body sent before the connection is dropped (once)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


def _handler(served: Served):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            served.requests.append((self.path, dict(self.headers)))
            data = served.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = self._start(len(data))
            if start is None:
                return
            body = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if served.cut_after is not None:
                body, served.cut_after = body[: served.cut_after], None
                self.wfile.write(body)
                self.close_connection = True
                return
            self.wfile.write(body)

        def _start(self, size: int) -> int | None:
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if not (served.ranges and match):
                return 0
            start = int(match[1])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return start

    return Handler


@contextlib.contextmanager
def serving(served: Served) -> Iterator[Served]:
    """Serve on 127.0.0.1 (a free port) for the duration of the block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
