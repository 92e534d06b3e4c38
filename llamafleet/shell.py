"""Shell command text: arguments quoted for sh (no SSH here, so planning code can build commands)."""

from __future__ import annotations

import shlex


def quote(template: str, *args: object) -> str:
    """Fill `template`'s %s slots with shell-quoted arguments (never build commands with f-strings)."""
    return template % tuple(shlex.quote(str(arg)) for arg in args)
