"""The balancer's configuration run by the real haproxy on loopback, in front of stand-in heads in this process:
streamed tokens pass one by one, the key reaches the head untouched, a loading head gets no request, a request a
head closed unanswered is answered by another. Skipped where haproxy is not installed."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llamafleet import haproxy
from llamafleet.roles.balancer import role
from llamafleet.roles.balancer.settings import BalancerSettings

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed here")
TOKENS = 3
TOKEN_GAP = 0.25  # seconds between two streamed tokens
# Privileges are dropped by the service (lab-tested); this test runs haproxy as whoever runs pytest.
AS_ROOT_ONLY = ("chroot ", "user ", "group ")


@dataclass
class StandIn:
    """A head: /health answers `health`; a completion is streamed as server-sent events, or closed unanswered."""

    health: int = 200
    hang_up: bool = False
    completions: list[str | None] = field(default_factory=list)  # the Authorization header of each request

    def serve(self) -> ThreadingHTTPServer:
        head = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(head.health)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                head.completions.append(self.headers.get("Authorization"))
                if head.hang_up:
                    self.close_connection = True
                    return  # nothing written: haproxy sees an empty response
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for number in range(TOKENS):
                    event = f"data: {{'token': {number}, 'sent': {time.monotonic()}}}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                    time.sleep(TOKEN_GAP)
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # health checks hang up as soon as they read the status line

        server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@dataclass(frozen=True)
class Head:
    name: str
    api_address: str
    api_port: int


@dataclass
class Balancer:
    port: int
    socket: str
    heads: dict[str, StandIn]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(balancer: Balancer, wanted: dict[str, bool], seconds: float = 20) -> None:
    """Until each named server is in rotation (True) or not (False), as the runtime API says."""
    deadline = time.monotonic() + seconds
    found: dict[str, bool] = {}
    while time.monotonic() < deadline:
        done = subprocess.run(["sh", "-c", haproxy.show_servers(balancer.socket)], capture_output=True, text=True)
        if done.returncode == 0:
            found = {name: s.in_rotation for name, s in haproxy.parse_servers(done.stdout.split("\n")).items()}
            if all(found.get(name) == state for name, state in wanted.items()):
                return
        time.sleep(0.2)
    raise AssertionError(f"servers never reached {wanted}: {found}")


@pytest.fixture(scope="module")
def balancer(tmp_path_factory) -> Iterator[Balancer]:
    folder: Path = tmp_path_factory.mktemp("balancer")
    heads = {"serving": StandIn(), "loading": StandIn(health=503), "closing": StandIn(hang_up=True)}
    servers = {name: head.serve() for name, head in heads.items()}
    port, admin = free_port(), str(folder / "admin.sock")
    settings = BalancerSettings("lb1", "127.0.0.1", port, 1, 30, 10)
    text = role.render_config(settings, [Head(n, "127.0.0.1", s.server_address[1]) for n, s in servers.items()])
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(AS_ROOT_ONLY))
    (folder / "haproxy.cfg").write_text(text.replace(haproxy.ADMIN_SOCKET, admin) + "\n")
    log = (folder / "haproxy.log").open("w")
    process = subprocess.Popen(["haproxy", "-W", "-db", "-f", str(folder / "haproxy.cfg")], stdout=log, stderr=log)
    try:
        ready = Balancer(port, admin, heads)
        wait_for(ready, {"serving": True, "loading": False, "closing": True})
        yield ready
    finally:
        process.terminate()
        process.wait(10)
        for server in servers.values():
            server.shutdown()
            server.server_close()


def complete(balancer: Balancer, key: str) -> tuple[int, list[tuple[float, bytes]]]:
    """One streamed completion through the balancer: its status and each event with the time it arrived."""
    connection = http.client.HTTPConnection("127.0.0.1", balancer.port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection.request("POST", "/v1/chat/completions", body=b'{"stream": true}', headers=headers)
    response = connection.getresponse()
    events = []
    while line := response.readline():
        if line.startswith(b"data: "):
            events.append((time.monotonic(), line))
    connection.close()
    return response.status, events


def test_tokens_arrive_as_the_head_sends_them_and_the_key_passes_untouched(balancer):
    status, events = complete(balancer, "sk-live-1")
    assert status == 200 and len(events) == TOKENS
    gaps = [later - earlier for (earlier, _), (later, _) in zip(events, events[1:], strict=False)]
    # Buffered, they would arrive together at the end; streamed, each about TOKEN_GAP after the one before.
    assert min(gaps) > TOKEN_GAP / 2, gaps
    assert "Bearer sk-live-1" in balancer.heads["serving"].completions


def test_a_loading_head_gets_no_request_and_one_that_hangs_up_is_retried_on_another(balancer):
    before = len(balancer.heads["closing"].completions)
    answered = [complete(balancer, f"sk-live-{number}")[0] for number in range(4)]
    assert answered == [200] * 4  # every request answered, although some first went to the head that hung up
    assert len(balancer.heads["closing"].completions) > before  # least connections did send some there
    assert balancer.heads["loading"].completions == []
