"""Operations grouped by what they manage; see base.py for the model."""

from . import commands, files, packages, systemd, users
from .base import Change, Facts, Feed, NoChange, Operation, Shell, Transfer, Upload

__all__ = [
    "Change",
    "Facts",
    "Feed",
    "NoChange",
    "Operation",
    "Shell",
    "Transfer",
    "Upload",
    "commands",
    "files",
    "packages",
    "systemd",
    "users",
]
