"""Role base's settings: the service user and packages every host gets, and how long SSH waits for a host."""

from __future__ import annotations

from dataclasses import dataclass

from llamafleet import rolesettings
from llamafleet.inventory import Host
from llamafleet.rolesettings import knob, line


@dataclass(frozen=True)
class BaseSettings:
    """The service user every host gets (never root or the login user: role base checks) and its packages."""

    user: str = knob(line(), variable="llamafleet_user")
    packages: tuple[str, ...] = knob(variable="base_packages")


def settings(host: Host, file: str | None = None) -> BaseSettings:
    return rolesettings.build(BaseSettings, host, file)
