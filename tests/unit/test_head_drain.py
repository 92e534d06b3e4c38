"""Behind balancers, the head's unit drains its API before llama-server is told to stop (its ExecStop=, run here)."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time

import pytest
from inventory_tree import HEAD_AND_WORKERS, write_tree

from llamafleet import cluster, inventory
from llamafleet.roles.head import role as head_role

BEHIND_BALANCERS = HEAD_AND_WORKERS + (
    "        w1: {ansible_host: 10.0.0.2}\n    balancers:\n      hosts:\n        lb1: {ansible_host: 10.0.0.9}\n"
)
# Stands in for llama-server: listens, prints its port, answers the first connection 1.5 s after accepting it.
# Its port lies below the kernel's ephemeral range, as an API port does: the drain counts every established
# connection of the machine with that local port, and on a busy machine a connection elsewhere may get an
# ephemeral port equal to one the kernel gave a listener (a different local address).
SERVER = """import random, socket, sys, time
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(1024 + (low - 1024) // 2, low), 100):
    try:
        listener = socket.create_server(("127.0.0.1", port))
        break
    except OSError:
        continue
print(listener.getsockname()[1], flush=True)
held, _ = listener.accept()
time.sleep(1.5)
held.sendall(b"answered")
held.close()
time.sleep(60)
"""


def head_unit(tmp_path, behind_balancers: bool) -> str:
    inv = inventory.load(write_tree(tmp_path, {"hosts.yml": BEHIND_BALANCERS}))
    (view,) = cluster.fleet(inv).clusters
    settings = head_role.settings.settings(inv.hosts[view.head])
    return head_role.render_unit(settings, view, behind_balancers=behind_balancers)


def exec_stop(unit: str) -> list[str]:
    """The ExecStop= lines' words as systemd reads them ('$$' and '%%' are one '$' and '%')."""
    lines = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStop=")]
    return [word.replace("$$", "$").replace("%%", "%") for line in lines for word in shlex.split(line)]


def test_only_a_head_behind_balancers_drains_on_stop_privileged_on_its_api_port(tmp_path):
    assert exec_stop(head_unit(tmp_path / "alone", behind_balancers=False)) == []
    words = exec_stop(head_unit(tmp_path / "behind", behind_balancers=True))
    assert words[:2] == ["+/bin/bash", "-c"] and words[3:] == ["drain", "8080", str(head_role.STOP_DRAIN_SECONDS)]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ss") is None, reason="ss -K needs root and iproute2")
def test_the_drain_closes_the_port_once_no_request_is_held_and_leaves_the_server_running(tmp_path):
    """A server holding one connection for 1.5 s: its port stays open while it holds it (closing it would cut
    llama-server's streams), the drain returns after the answer, then new connections are refused; the server is
    running (not left frozen) afterwards."""
    script = exec_stop(head_unit(tmp_path, behind_balancers=True))[2]
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        started = time.monotonic()
        drain = subprocess.Popen(["bash", "-c", script, "drain", str(port), "20"], env={**os.environ,
                                 "MAINPID": str(server.pid)})  # fmt: skip
        time.sleep(0.5)
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # still open: a request is held
        assert drain.wait(timeout=30) == 0 and 1.0 <= time.monotonic() - started < 10
        assert client.recv(100) == b"answered"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(server.pid)], capture_output=True, text=True)
        assert state.stdout.strip()[:1] in ("S", "R"), state.stdout
    finally:
        server.kill()
        server.wait()
