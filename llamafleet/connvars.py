"""Ansible connection variables llamafleet does not take as they are: honoured, warned about, or refused."""

from __future__ import annotations

from .inventory import Host


def review(host: Host, file: str) -> list[str]:
    """Warnings for `host`'s connection variables; raises InventoryError for one that would act wrongly."""
    return []
