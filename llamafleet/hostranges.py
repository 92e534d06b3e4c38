"""Ansible host ranges in inventory host names (w[01:03], n[a:c]), with limits checked before expanding."""

from __future__ import annotations

import itertools
import re

from .errors import InventoryError
from .yamlfile import printable

MAX_HOSTS = 10_000  # hosts one range pattern (w[0001:9999]) expands to, and hosts in the whole inventory
MAX_RANGE_DIGITS = 18
_RANGE = re.compile(r"\[(?:([0-9]+):([0-9]+)(?::([0-9]+))?|([a-z]):([a-z]))\]")


def range_problem(pattern: str) -> str | None:
    """Why the host ranges of `pattern` cannot be expanded (stride 0, backwards, too many hosts), or None."""
    count = 1
    for match in _RANGE.finditer(pattern):
        start, end, stride, first, last = match.groups()
        if first:
            low, high, step = ord(first), ord(last), 1
        elif max(len(start), len(end), len(stride or "")) > MAX_RANGE_DIGITS:
            return f"range {match.group()}: a number has more than {MAX_RANGE_DIGITS} digits"
        else:
            low, high, step = int(start), int(end), int(stride or 1)
        if step < 1:
            return f"range {match.group()}: the step must be at least 1"
        if low > high:
            return f"range {match.group()}: runs backwards ({start or first} is after {end or last})"
        count *= len(range(low, high + 1, step))
        if count > MAX_HOSTS:
            return f"expands to more than {MAX_HOSTS} hosts (the limit)"
    return None


def expand_range(pattern: str) -> list[str]:
    """Ansible host ranges: 'w[01:03]' -> w01, w02, w03; 'w[1:5:2]' -> w1, w3, w5; 'n[a:c]' -> na, nb, nc."""
    problem = range_problem(pattern)
    if problem:
        raise InventoryError(problem, key=printable(pattern))
    matches = list(_RANGE.finditer(pattern))
    cuts = [0, *(i for match in matches for i in match.span()), len(pattern)]
    texts = [pattern[a:b] for a, b in zip(cuts[::2], cuts[1::2], strict=True)]
    return [
        texts[0] + "".join(item + text for item, text in zip(items, texts[1:], strict=True))
        for items in itertools.product(*(_range_items(match) for match in matches))
    ]


def _range_items(match: re.Match) -> list[str]:
    start, end, stride, first, last = match.groups()
    if first:
        return [chr(c) for c in range(ord(first), ord(last) + 1)]
    width = len(start) if start.startswith("0") else 0
    return [str(i).zfill(width) for i in range(int(start), int(end) + 1, int(stride or 1))]
