"""What every task reads before it runs: ansible.cfg, the vault passwords, the inventory (each once per process)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import ansible_cfg, inventory_sources
from . import inventory as inventory_mod

if TYPE_CHECKING:
    from .vault import VaultSecrets

# -i as given: several (in order), one, or none (then the configured or default inventory).
Sources = Sequence[str] | str | None


@dataclass(frozen=True)
class Vault:
    """--vault-password-file and --vault-id (both repeatable) and --ask-vault-pass, as given."""

    password_files: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    ask: bool = False


NO_VAULT = Vault()


@functools.cache
def configuration() -> ansible_cfg.Settings:
    """ansible.cfg and the ANSIBLE_* variables that stand for its keys, read once per process (its warnings
    printed once)."""
    settings = ansible_cfg.read()
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings


@functools.cache
def vault_secrets(vault: Vault) -> VaultSecrets:
    """The vault passwords of the flags, the environment (ANSIBLE_VAULT_PASSWORD_FILE...) and ansible.cfg, read
    once per process: the tasks of one command line prompt once and run a password script once."""
    from .vault_secrets import vault_secrets as read  # scripts run, prompts appear: only for tasks that need them

    config = configuration()
    return read(
        vault.password_files,
        vault.ids,
        vault.ask,
        environ=ansible_cfg.vault_environment(config),
        configured_password_file=config.vault_password_file,
        configured_ids=config.vault_identity_list,
    )


def load_inventory(paths: Sources, extra_vars: list[str] | None, vault: Vault = NO_VAULT) -> inventory_mod.Inventory:
    """The inventory of -i (each, in order), else $LLAMAFLEET_INVENTORY, else ANSIBLE_INVENTORY or ansible.cfg's
    inventory, else inventory/hosts.yml; its warnings printed."""
    config = configuration()
    secrets = vault_secrets(vault)
    inventory = inventory_mod.load(
        inventory_sources.chosen(paths, config.inventory, config.inventory_by),
        inventory_mod.parse_extra_vars(extra_vars, secrets),
        vault_secrets=secrets,
        fallback=config.fallback,
        ignored=config.ignored,
    )
    for warning in getattr(inventory, "warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return inventory
