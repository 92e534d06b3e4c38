"""Where an inventory comes from: the -i sources (files, folders, scripts; several merged in order), the default
when none is given, the files a folder holds in Ansible's order, and each file read as Ansible's plugins read it.

A folder is read as ansible-core reads one: its entries in sorted order, folders among them read the same way,
skipping names that start with '.', `group_vars`, `host_vars`, `vars_plugins` and names ending in one of
Ansible's INVENTORY_IGNORE_EXTS (or matching INVENTORY_IGNORE_PATTERNS; ansible.cfg may set both). Each file is
then tried as Ansible's plugins try it: an executable file is run as an inventory script (one the system cannot
run, having no #! line, is read as a file instead, as Ansible does), a YAML file whose `plugin:` names an
inventory plugin is refused (llamafleet runs no plugins), `.toml` is refused, anything else is YAML or INI
(ini_inventory.read tells them apart by content).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ini_inventory, inventory_scripts, vault
from .errors import InventoryError
from .yamlfile import printable, shorten

DEFAULT_INVENTORY = "inventory/hosts.yml"
# ansible-core's REJECT_EXTS + ['.orig', '.cfg', '.retry'] (its INVENTORY_IGNORE_EXTS default)
IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
ALWAYS_IGNORED = (r"^\.", r"^host_vars$", r"^group_vars$", r"^vars_plugins$")
MAX_FOLDER_FILES = 1000  # inventory files one -i folder may hold, its subfolders' included
PLUGIN_SUFFIXES = (".yml", ".yaml")  # where Ansible's auto plugin looks for `plugin:`


@dataclass(frozen=True)
class Ignored:
    """The names a folder's walk skips: Ansible's fixed rules, ignored extensions, and regular expressions."""

    extensions: tuple[str, ...] = IGNORED_EXTENSIONS
    patterns: tuple[str, ...] = ()

    def rule(self) -> re.Pattern[str]:
        """One expression, searched in each name, as ansible-core builds it (a bad pattern: re.error)."""
        ends = [re.escape(extension) + "$" for extension in self.extensions if extension]
        return re.compile("|".join([*ALWAYS_IGNORED, *self.patterns, *ends]))


def chosen(given: Sequence[str] | str | None, configured: Sequence[str] = (), configured_by: str = "") -> list[str]:
    """The inventory sources of a run: every -i in order, else $LLAMAFLEET_INVENTORY, else the configured ones
    (ANSIBLE_INVENTORY or ansible.cfg's inventory, named by `configured_by`; each must exist), else
    inventory/hosts.yml."""
    if isinstance(given, str):
        given = [given]
    if given:
        return list(given)
    if os.environ.get("LLAMAFLEET_INVENTORY"):
        return [os.environ["LLAMAFLEET_INVENTORY"]]
    for path in configured:
        if not os.path.exists(path):
            message = f"no such inventory file or folder (named by {configured_by})"
            raise InventoryError(message, file=printable(path))
    return list(configured) or [DEFAULT_INVENTORY]


def files(source: Path, ignored: Ignored | None = None) -> list[Path]:
    """The inventory files of a -i source: itself, or what a folder holds, in the order Ansible reads them."""
    if not source.is_dir():
        return [source]
    try:
        rule = (ignored or Ignored()).rule()
    except re.error as exc:
        raise InventoryError(f"an inventory ignore pattern is not a regular expression: {exc}") from None
    found = _walk(source, rule, {source.resolve()})
    if not found:
        message = "no inventory file in this folder (hidden, group_vars, host_vars and ignored names are skipped)"
        raise InventoryError(message, file=printable(str(source)))
    return found


def _walk(folder: Path, rule: re.Pattern[str], seen: set[Path]) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", file=printable(str(folder))) from None
    found: list[Path] = []
    for name in names:
        entry = folder / name
        if rule.search(name):
            continue
        try:
            mode = entry.stat().st_mode
        except OSError:  # a dangling link
            continue
        if stat.S_ISDIR(mode) and entry.resolve() not in seen:  # a link back up is read once, not forever
            seen.add(entry.resolve())
            found += _walk(entry, rule, seen)
        elif stat.S_ISREG(mode):
            found.append(entry)
        if len(found) > MAX_FOLDER_FILES:
            message = f"more than {MAX_FOLDER_FILES} inventory files in this folder (the limit)"
            raise InventoryError(message, file=printable(str(folder)))
    return found


def read(path: Path, vault_secrets: vault.VaultSecrets | None = None) -> Any:
    """One inventory file in the YAML inventory shape: a script's listing, or a YAML or INI file."""
    if os.access(path, os.X_OK):
        try:
            return inventory_scripts.read(path, vault_secrets)
        except inventory_scripts.NotAScript:
            pass
    if path.suffix == ".toml":
        raise InventoryError("TOML inventories are not read (YAML, INI and scripts are)", file=printable(str(path)))
    document = ini_inventory.read(path, vault_secrets)
    plugin = document.get("plugin") if isinstance(document, dict) else None
    if path.suffix in PLUGIN_SUFFIXES and isinstance(plugin, str):
        message = (
            f"configures the inventory plugin {printable(shorten(plugin))!r}, which llamafleet does not run: "
            "use an executable script that runs `ansible-inventory -i FILE --list` instead"
        )
        raise InventoryError(message, file=printable(str(path)))
    return document
