"""The files a lab hands to its users: user key, pinned known_hosts, Ansible-style inventory."""

from __future__ import annotations

import os
from pathlib import Path

from .host import render
from .state import LabHost, LabInfo
from .system import run

# .api-key, .ca.pem, .ca.key: made by the first provision of the lab's inventory (role head: the API key, and the
# CA with api_tls), removed with the lab.
GENERATED_SUFFIXES = (".yml", ".known_hosts", ".key", ".key.pub", ".api-key", ".bench.jsonl", ".ca.pem", ".ca.key")


def generated_files(directory: Path, name: str) -> list[Path]:
    """inventory/<name>.yml, .known_hosts, .key and .key.pub, and what provisions made beside them."""
    return [directory / f"{name}{suffix}" for suffix in GENERATED_SUFFIXES]


def remove_generated(directory: Path, name: str) -> None:
    for path in generated_files(directory, name):
        path.unlink(missing_ok=True)


def create_user_key(key: Path, lab: str) -> str:
    """A fresh ed25519 key for the lab (mode 0600); returns the public key line."""
    key.parent.mkdir(parents=True, exist_ok=True)
    for old in (key, key.with_name(key.name + ".pub")):
        old.unlink(missing_ok=True)
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"llamafleet-lab-{lab}", "-f", str(key)],
        what=f"lab {lab}: generating the lab's SSH key",
    )
    key.chmod(0o600)
    return key.with_name(key.name + ".pub").read_text()


def write_known_hosts(path: Path, host_keys: dict[str, str], hosts: list[LabHost]) -> None:
    """Exactly the hosts' new host keys, read from their roots (no trust on first use)."""
    lines = [f"{host.address} {host_keys[host.name]}\n" for host in hosts]
    _write(path, "".join(lines), 0o644)


def write_inventory(lab: LabInfo) -> None:
    _write(Path(lab.inventory), render("inventory.yml.j2", lab=lab), 0o644)


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def ssh_argv(lab: LabInfo, host: LabHost, *, batch: bool = True) -> list[str]:
    """ssh to a lab host with the lab key and the pinned known_hosts, host-key checking on."""
    options = [
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        "-i",
        lab.key,
    ]
    if batch:
        options = ["-F", "/dev/null", "-o", "BatchMode=yes", *options]
    return ["ssh", *options, f"root@{host.address}"]
