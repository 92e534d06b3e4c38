"""Command-line values as the tasks take them: a value out of bounds is a UsageError naming its flag."""

from __future__ import annotations

from .errors import UsageError


def parse_forks(value: str | int | None) -> int:
    """--forks as given on the command line: a whole number of at least 1 (default 10)."""
    return 10 if value is None else parse_whole("--forks", value, 1)


def parse_whole(flag: str, value: str | int, minimum: int, maximum: int | None = None) -> int:
    """A whole-number flag as given on the command line, within its bounds."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UsageError(f"{flag} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise UsageError(f"{flag} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise UsageError(f"{flag} must be at most {maximum}, not {number}")
    return number
