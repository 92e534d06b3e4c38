"""The one Jinja environment of roles' templates: StrictUndefined, no escaping, the shared folder behind each role's.

Templates compile once: their bytecode is kept in the controller's private cache (keyed by each
template's checksum and the Python version), so a run with nothing to change does not compile them again.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

from .controller_cache import cache_root, private_dir
from .variables import ROLES_DIR

SHARED_TEMPLATES = ROLES_DIR.parent / "templates"


@cache
def environment(template_dir: Path) -> jinja2.Environment:
    """Templates found in `template_dir` first, then in the project's templates/ folder."""
    loader = jinja2.FileSystemLoader([str(template_dir), str(SHARED_TEMPLATES)])
    # Config files and shell units, not HTML: escaping would corrupt them.
    options = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True, "bytecode_cache": _compiled()}
    return jinja2.Environment(loader=loader, autoescape=False, **options)  # noqa: S701


@cache
def _compiled() -> jinja2.BytecodeCache | None:
    try:
        return jinja2.FileSystemBytecodeCache(str(private_dir(cache_root() / "templates")))
    except OSError:  # no cache folder: templates compile on every run, as they would without one
        return None


def render(template_dir: Path, template: str, context: dict) -> str:
    """`template` rendered with `context`; raises jinja2.TemplateError (callers name the host and role)."""
    return environment(template_dir).get_template(template).render(context)
