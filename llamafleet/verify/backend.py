"""A testinfra backend over llamafleet's own SSH connection: pinned host keys, jump hosts, sudo as provision does.

testinfra's paramiko backend accepts unknown host keys; its OpenSSH backend would need an ssh_config written
from the inventory (and a sudo password it cannot give). Running testinfra's commands through the engine's
HostConnection keeps one privilege path and one host-key policy for provision, deploy and verify.
"""

from __future__ import annotations

from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from llamafleet.ssh import HostConnection


class EngineBackend(BaseBackend):
    """Runs testinfra's commands over a HostConnection (as root when the inventory says ansible_become)."""

    NAME = "llamafleet"

    def __init__(self, connection: HostConnection, **kwargs: Any) -> None:
        self.connection = connection
        self.commands = 0
        super().__init__(connection.name, **kwargs)

    def get_pytest_id(self) -> str:
        return self.hostname

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        line = self.get_command(command, *args)
        self.commands += 1
        done = self.connection.run(line)
        return self.result(done.status, self.encode(line), done.stdout.encode(), done.stderr.encode())


def engine_host(connection: HostConnection) -> testinfra.host.Host:
    """A testinfra Host (the `host` fixture's type) whose every command goes through `connection`."""
    backend = EngineBackend(connection)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
