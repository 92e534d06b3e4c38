"""What the unit tests share about recorded output: where it lives, how it is split, how commands are read."""

from __future__ import annotations

import shlex
from pathlib import Path

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
# Recorded from the reference build of llama.cpp b11434: --version output, ldd, BUILD.json, the artifact's files.
REFERENCE_BUILD = Path(__file__).resolve().parents[1] / "fixtures" / "llama_cpp"


def recorded_lines(path: str | Path) -> list[str]:
    """A recorded output split into lines exactly as parse_batch hands them to process().

    `path` is relative to RECORDED ("model/rpc_cache_state_w1.txt"), or absolute.
    """
    text = (RECORDED / path).read_text()
    text = text[:-1] if text.endswith("\n") else text
    return text.split("\n") if text else []


def words(command: str) -> list[str]:
    """The shell words of a command, with ; && | > as words of their own (as a shell splits them)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)
