"""Roles live in roles/<name>/: defaults.yml, role.py (operations, handlers, hooks), templates/."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import jinja2

from .errors import LlamafleetError
from .inventory import Host
from .variables import ROLES_DIR

if TYPE_CHECKING:
    from .runner import Runner

SHARED_TEMPLATES = ROLES_DIR.parent / "templates"


@dataclass
class HostContext:
    """What a role sees while planning one host: its variables, static facts and the run."""

    host: Host
    os: dict[str, str]
    runner: Runner
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


def sibling(role_file: str, name: str) -> ModuleType:
    """A helper module beside a role's role.py (roles are not packages), imported once under a unique name."""
    folder = Path(role_file).resolve().parent
    module_name = f"llamafleet_role_{folder.name}_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    return load_path(folder / f"{name}.py", module_name)


@cache
def load(name: str | ModuleType) -> ModuleType:
    """Import roles/<name>/role.py (roles are not a package: they are found by path, like Ansible's)."""
    if isinstance(name, ModuleType):
        return name
    path = ROLES_DIR / name / "role.py"
    if not path.is_file():
        raise LlamafleetError(f"role {name}: {path} does not exist")
    return load_path(path, f"llamafleet_role_{name}")
