"""The one Jinja environment of roles' templates: StrictUndefined, no escaping, the shared folder behind each role's."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

from .variables import ROLES_DIR

SHARED_TEMPLATES = ROLES_DIR.parent / "templates"


@cache
def environment(template_dir: Path) -> jinja2.Environment:
    """Templates found in `template_dir` first, then in the project's templates/ folder."""
    loader = jinja2.FileSystemLoader([str(template_dir), str(SHARED_TEMPLATES)])
    # Config files and shell units, not HTML: escaping would corrupt them.
    options = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True}
    return jinja2.Environment(loader=loader, autoescape=False, **options)  # noqa: S701


def render(template_dir: Path, template: str, context: dict) -> str:
    """`template` rendered with `context`; raises jinja2.TemplateError (callers name the host and role)."""
    return environment(template_dir).get_template(template).render(context)
