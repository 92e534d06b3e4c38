"""Throw-away systemd hosts (systemd-nspawn on a private bridge) standing in for VMs in CI."""

from __future__ import annotations

from .lifecycle import down, firewall_frontends, reboot, shell_command, status, up
from .state import LabHost, LabInfo
from .system import LabError

__all__ = ["LabError", "LabHost", "LabInfo", "down", "firewall_frontends", "reboot", "shell_command", "status", "up"]
