"""The role contract (`Role`) and its loader: roles/<name>/role.py declares `ROLE = Role(...)`.

The roles folder is this module's package path, so a role and its helper modules are ordinary
imports: `llamafleet.roles.firewall.rules`, and inside a role `from . import rules`.

A run calls a role's parts in this order: `validate` for every role of the run (before any
connection, changes nothing), then `setup` for every role (controller-side work, also before any
connection: told --check, it must change nothing then), then phase by phase: `prepare` (may read
facts and act on the controller), `operations` per host, the `handlers` they notified, `gate`
(not under --check). `prefetch` names facts read with the run's first batch of each host.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from .errors import LlamafleetError
from .templating import SHARED_TEMPLATES
from .variables import ROLES_DIR

if TYPE_CHECKING:
    from .facts import Fact
    from .inventory import Host
    from .operations.base import Operation
    from .run import HostContext, Run

__path__ = [str(ROLES_DIR)]  # roles/<name>/ are subpackages of llamafleet.roles

Hook = Callable[["Run", "list[Host]"], None]


def _no_operations(ctx: HostContext) -> Iterable[Operation]:
    return ()


@dataclass(frozen=True)
class Role:
    """One role as a run uses it; only `name` is required (a role of hooks alone converges nothing)."""

    name: str
    operations: Callable[[HostContext], Iterable[Operation]] = _no_operations
    template_dir: Path = SHARED_TEMPLATES  # its own templates (templates_beside), found before the shared ones
    handlers: Mapping[str, Callable[[HostContext], Operation]] = field(default_factory=dict)
    prefetch: tuple[Fact, ...] = ()
    validate: Hook | None = None  # before any connection; checks settings and changes nothing
    setup: Hook | None = None  # before any connection, after every role validated: controller-side work
    prepare: Hook | None = None  # at the role's phase, before its operations: decides what they hand over
    gate: Callable[[Run, list[Host]], list[str]] | None = None  # after its operations: problems stop the run

    def __post_init__(self) -> None:
        object.__setattr__(self, "handlers", MappingProxyType(dict(self.handlers)))
        object.__setattr__(self, "prefetch", tuple(self.prefetch))


def templates_beside(module_file: str) -> Path:
    """The templates/ folder beside a role's module."""
    return Path(module_file).resolve().parent / "templates"


def load_path(path: Path, module_name: str) -> Role:
    """The `ROLE` of a role module in any file (the benchmark's and tests' sample roles)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return _role_of(module, path)


@cache
def load(name: str) -> Role:
    """The `ROLE` of roles/<name>/role.py, or of roles/<name>/<module>.py for a name written `<name>/<module>`."""
    folder, _, module = name.partition("/")
    module = module or "role"
    path = ROLES_DIR / folder / f"{module}.py"
    if not (folder.isidentifier() and module.isidentifier()) or not path.is_file():
        raise LlamafleetError(f"role {name}: {path} does not exist")
    return _role_of(importlib.import_module(f"{__name__}.{folder}.{module}"), path)


def _role_of(module, path: Path) -> Role:
    try:
        role = module.ROLE
    except AttributeError:
        role = None
    if not isinstance(role, Role):
        raise LlamafleetError(f"role module {path} declares no ROLE = Role(...)")
    return role
