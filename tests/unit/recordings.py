"""What the unit tests share about recorded output: where it lives, how it is split, how commands are read."""

from __future__ import annotations

import shlex
from pathlib import Path

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def recorded_lines(path: Path) -> list[str]:
    """A recorded output split into lines exactly as parse_batch hands them to process()."""
    text = path.read_text()
    text = text[:-1] if text.endswith("\n") else text
    return text.split("\n") if text else []


def words(command: str) -> list[str]:
    """The shell words of a command, with ; && | > as words of their own (as a shell splits them)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)
