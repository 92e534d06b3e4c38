"""Shell command text: arguments quoted for sh (no SSH here, so planning code can build commands)."""

from __future__ import annotations

import shlex


def quote(template: str, *args: object) -> str:
    """Fill `template`'s %s slots with shell-quoted arguments.

    Every value (a path, a name, anything from the inventory or a host) enters a command through a %s
    slot here, never through an f-string; fragments made this way may then be joined into one command.
    """
    return template % tuple(shlex.quote(str(arg)) for arg in args)
