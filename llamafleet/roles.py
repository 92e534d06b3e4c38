"""Roles live in roles/<name>/: defaults.yml, role.py (operations, handlers, hooks), templates/.

The roles folder is this module's package path, so a role and its helper modules are ordinary
imports: `llamafleet.roles.firewall.rules`, and inside a role `from . import rules`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2

from .errors import LlamafleetError
from .inventory import Host
from .run import Run
from .variables import ROLES_DIR

SHARED_TEMPLATES = ROLES_DIR.parent / "templates"
__path__ = [str(ROLES_DIR)]  # roles/<name>/ are subpackages of llamafleet.roles


@dataclass
class HostContext:
    """What a role sees while planning one host: its variables, static facts and the run's view."""

    host: Host
    os: dict[str, str]
    run: Run
    role: str
    template_dir: Path

    @property
    def vars(self) -> dict[str, Any]:
        return self.host.vars

    @property
    def name(self) -> str:
        return self.host.name

    def render(self, template: str, **extra: Any) -> str:
        """Render roles/<role>/templates/<template> (or templates/<template>) with the host's vars."""
        context = {
            **self.vars,
            "inventory_hostname": self.name,
            "group_names": self.host.groups,
            "os": self.os,
            **extra,
        }
        try:
            return _environment(self.template_dir).get_template(template).render(context)
        except jinja2.TemplateError as exc:
            raise LlamafleetError(f"{self.name}: template {template} of role {self.role}: {exc}") from None


@cache
def _environment(template_dir: Path) -> jinja2.Environment:
    loader = jinja2.FileSystemLoader([str(template_dir), str(SHARED_TEMPLATES)])
    # Config files and shell units, not HTML: escaping would corrupt them.
    options = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True}
    return jinja2.Environment(loader=loader, autoescape=False, **options)  # noqa: S701


def load_path(path: Path, module_name: str) -> ModuleType:
    """Import a role module from any file (used for the benchmark's and tests' sample roles)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@cache
def load(name: str | ModuleType) -> ModuleType:
    """Import roles/<name>/role.py as llamafleet.roles.<name>.role."""
    if isinstance(name, ModuleType):
        return name
    path = ROLES_DIR / name / "role.py"
    if not name.isidentifier() or not path.is_file():
        raise LlamafleetError(f"role {name}: {path} does not exist")
    return importlib.import_module(f"{__name__}.{name}.role")
