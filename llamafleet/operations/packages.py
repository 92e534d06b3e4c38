"""Package operations, per distribution family (apt on Debian/Ubuntu, dnf on Fedora/RHEL)."""

from __future__ import annotations

from ..errors import OperationError
from ..facts import DebPackages, RpmPackages
from ..shell import quote
from .base import Change, Facts, NoChange, Operation, Shell

APT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --"


def install_command(family: str, names: list[str]) -> str:
    """The command that installs `names`; apt refreshes its lists only when the first try fails."""
    args = " ".join(quote("%s", n) for n in names)
    if family == "debian":
        return f"{APT} {args} || {{ apt-get update -q && {APT} {args}; }}"
    if family == "redhat":
        return f"dnf install -y -q -- {args}"
    raise OperationError(f"no package manager known for OS family '{family}'")


def present(names: list[str], family: str, *, notify: tuple[str, ...] = ()) -> Operation:
    """Every package in `names` is installed (any version)."""
    names = sorted(set(names))
    if family == "debian":
        fact = DebPackages(names)
    elif family == "redhat":
        fact = RpmPackages(names)
    else:
        raise OperationError(f"no package manager known for OS family '{family}'")

    def plan(facts: Facts):
        installed = facts[fact]
        missing = [n for n in names if n not in installed]
        if not missing:
            return NoChange(f"installed: {', '.join(names)}")
        return Change((Shell(install_command(family, missing)),), f"missing: {', '.join(missing)}")

    return Operation(f"packages {', '.join(names)}", [fact], plan, notify)
