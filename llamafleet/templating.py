"""The one Jinja environment of roles' templates: StrictUndefined, no escaping, the shared folder behind each role's.

Templates compile once: their bytecode is kept in the controller's private cache (keyed by each
template's checksum and the Python version), so a run with nothing to change does not compile them again.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .controller_cache import cache_root, private_dir
from .variables import ROLES_DIR

if TYPE_CHECKING:  # jinja2 loads with the first template rendered, not with every module that names this one
    import jinja2

SHARED_TEMPLATES = ROLES_DIR.parent / "templates"


@cache
def environment(template_dir: Path) -> jinja2.Environment:
    """Templates found in `template_dir` first, then in the project's templates/ folder."""
    import jinja2

    loader = jinja2.FileSystemLoader([str(template_dir), str(SHARED_TEMPLATES)])
    # Config files and shell units, not HTML: escaping would corrupt them.
    options = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True, "bytecode_cache": compiled()}
    return jinja2.Environment(loader=loader, autoescape=False, **options)  # noqa: S701


@cache
def compiled(folder: str = "templates") -> jinja2.BytecodeCache | None:
    """The bytecode of compiled templates, kept in the controller's private cache under `folder`; None when that
    folder cannot be made (templates then compile on every run). One folder per set of Environment options: the
    code depends on them, while an entry is found by the template's name and path and checked against its source."""
    import jinja2

    try:
        return jinja2.FileSystemBytecodeCache(str(private_dir(cache_root() / folder)))
    except OSError:
        return None


def render(template_dir: Path, template: str, context: dict) -> str:
    """`template` rendered with `context`; raises jinja2.TemplateError (callers name the host and role)."""
    return environment(template_dir).get_template(template).render(context)
