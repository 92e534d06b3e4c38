"""Blocks of variables, checked, and the group_vars/ and host_vars/ files beside an inventory that hold them."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from . import variables, vault, yamlfile
from .errors import InventoryError
from .yamlfile import printable, shorten

VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")


def check_vars(block: dict, file: str, where: str) -> None:
    """Reject names that are not variable names, unknown-looking llamafleet variables and values of the wrong type."""
    for name, value in block.items():
        line = block.line_of(name) if hasattr(block, "line_of") else None
        problem = variables.check_variable_name(name) or variables.check_name(name)
        if problem is None and (name in variables.catalogue() or name in variables.CONNECTION_VARS):
            problem = variables.check_value(name, value)
        if problem:
            raise InventoryError(problem, file=file, where=where, key=shown(name), line=line)


class VarsFiles:
    """group_vars/ and host_vars/ beside the inventory, each file read and checked once; vaulted files and values
    are opened with `vault_secrets`."""

    def __init__(self, root: Path, vault_secrets: vault.VaultSecrets | None = None) -> None:
        self.root = root
        self.vault_secrets = vault_secrets
        self.by_name: dict[tuple[str, str], dict[str, Any]] = {}
        self.files: dict[Path, dict[str, Any]] = {}
        self.folders: dict[str, bool] = {}

    def read(self, kind: str, name: str, where: str) -> dict[str, Any]:
        """Like Ansible: the first of NAME, NAME.yml, NAME.yaml, NAME.json; a folder is read whole, sorted."""
        if (kind, name) not in self.by_name:
            found: dict[str, Any] = {}
            if kind not in self.folders:
                self.folders[kind] = (self.root / kind).is_dir()
            for file in _vars_file_list(self.root / kind, name) if self.folders[kind] else []:
                found.update(self.read_file(file, where))
            self.by_name[kind, name] = found
        return self.by_name[kind, name]

    def read_file(self, file: Path, where: str) -> dict[str, Any]:
        if file not in self.files:
            data = yamlfile.load(file, self.vault_secrets)
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise InventoryError("must be a mapping of variables", file=printable(str(file)), where=where)
            check_vars(data, printable(str(file)), where)
            self.files[file] = dict(data)
        return self.files[file]


def _vars_file_list(folder: Path, name: str) -> list[Path]:
    for suffix in VARS_SUFFIXES:
        candidate = folder / (name + suffix)
        try:
            if candidate.is_dir():
                return _folder_files(candidate, set())
            if candidate.is_file():
                return [candidate]
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:  # a name too long for a file cannot have a vars file
                raise InventoryError(f"cannot read: {exc.strerror}", file=printable(str(candidate))) from None
    return []


def _folder_files(folder: Path, seen: set[Path]) -> list[Path]:
    """YAML/JSON files below a vars folder; hidden files, backups~, other extensions and repeated folders skipped."""
    seen.add(folder.resolve())
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror}", file=printable(str(folder))) from None
    found: list[Path] = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and entry.resolve() not in seen:  # a symlink back up is read once, not forever
            found.extend(_folder_files(entry, seen))
        elif entry.suffix in VARS_SUFFIXES and entry.is_file():
            found.append(entry)
    return found


def shown(value: Any) -> str:
    """A key as the user wrote it in YAML, made safe for a one-line message."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return printable(shorten(str(value))) or "''"
