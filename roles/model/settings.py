"""Role model's settings: how many deployed models a host keeps."""

from __future__ import annotations

from dataclasses import dataclass

from llamafleet import rolesettings
from llamafleet.inventory import Host
from llamafleet.rolesettings import knob


@dataclass(frozen=True)
class ModelSettings:
    """The deployed model and the keep_models - 1 deployed before it stay; older ones are pruned."""

    keep_models: int = knob()


def settings(host: Host, file: str | None = None) -> ModelSettings:
    return rolesettings.build(ModelSettings, host, file)
