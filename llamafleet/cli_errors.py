"""How a task's failure reaches the user: one line and its exit status; a bug also leaves a report file."""

from __future__ import annotations

import functools
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from invoke.exceptions import Exit, ParseError

from . import controller_cache, redaction
from .errors import LlamafleetError, UsageError


def reports_errors(function: Callable) -> Callable:
    """Turn llamafleet's errors into one line on stderr and the error's exit status."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exit:
            raise
        except LlamafleetError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except BrokenPipeError:  # output piped into head(1) and the like
            sys.stderr.close()
            raise Exit(code=1) from None
        except Exception:  # a bug, not a user mistake: one line here, the traceback in a file
            raise Exit(f"error: internal error: {crash_report()}", code=1) from None

    return wrapper


def crash_report() -> str:
    """Write the current exception's traceback to a file; return a line naming the error and the file.

    Neither holds a secret: the command line's secret values (-e KEY=VALUE of a secret's KEY, a URL's user and
    query) and those of the environment (HF_TOKEN and the like) are hidden wherever they appear.
    """
    kind, value, _ = sys.exc_info()
    argv, hidden = redaction.argv_shown(sys.argv)
    secrets = [*hidden, *redaction.environment_secrets(os.environ)]
    summary = f"{kind.__name__}: {value}".splitlines()[0] if kind else "unknown"
    summary = redaction.text_shown(summary, secrets)[:300]
    folder = controller_cache.cache_root() / "crashes"
    try:
        controller_cache.private_dir(folder)
        prefix = time.strftime("crash-%Y%m%d-%H%M%S-")
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=prefix, suffix=".txt", delete=False) as handle:
            report = f"llamafleet {shlex.join(argv)}\n\n{traceback.format_exc()}"
            handle.write(redaction.text_shown(report, secrets))
    except OSError:
        return f"{summary} (could not write the traceback to {folder})"
    return f"{summary}; the full traceback is in {handle.name} (secrets hidden; please attach it to a bug report)"


def report_parse_errors(program: Any) -> None:
    """Make the program (`invoke`, or the installed `llamafleet`) answer a bad task name, flag or flag value
    with one line and exit 2.

    Invoke itself exits 1 on an unknown flag and prints a traceback for a value its parser cannot
    cast; llamafleet documents 2 for every kind of bad input. Installed by llamafleet/commands.py,
    which is imported before the task part of the command line is parsed.
    """
    if getattr(program, "_llamafleet_parse_errors", False):
        return
    parse_tasks = program.parse_tasks
    name = getattr(program, "_binary", None) or "invoke"

    def parse_tasks_reporting() -> None:
        try:
            parse_tasks()
        except (ParseError, ValueError) as exc:
            raise Exit(f"error: {exc} (see: {name} --help TASK)", code=UsageError.exit_code) from None

    program.parse_tasks = parse_tasks_reporting
    program._llamafleet_parse_errors = True
