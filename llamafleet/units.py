"""systemd unit text for the services: Exec= lines quoted as systemd reads them, the sandbox per backend."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from . import roles
from .errors import InventoryError, LlamafleetError
from .yamlfile import shorten

# Words systemd takes as they are: no quotes, backslashes, whitespace, '%' specifiers or '$' variables.
_PLAIN = re.compile(r"[A-Za-z0-9_./:,=+@-]+")


class Specifier(str):
    """A word holding systemd %-specifiers on purpose (e.g. %d/api-key): written without escaping its '%'."""


def quote(word: str) -> str:
    """One Exec= argument as systemd reads it back: '%' and '$' doubled, double quotes when needed."""
    if any(ord(c) < 32 or ord(c) == 127 for c in word):
        raise ValueError(f"{word!r} holds control characters, which a unit file cannot carry")
    if isinstance(word, Specifier):
        return str(word)
    text = word.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(word):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(words: Iterable[str]) -> str:
    """The value of an ExecStart= line: the executable and its arguments, each quoted for systemd."""
    return " ".join(quote(word) for word in words)


@dataclass(frozen=True)
class Sandbox:
    """Hardening that depends on the backend: GPUs need their device nodes, CUDA needs W+X memory."""

    private_devices: bool
    device_allow: tuple[str, ...]  # DeviceAllow= values ("char-drm rw")
    supplementary_groups: tuple[str, ...]
    memory_deny_write_execute: bool
    private_users: bool
    proc_subset_pid: bool


# Device groups as named in /proc/devices (DeviceAllow= matches them by glob; majors can be dynamic).
# char-nvidia-frontend: /dev/nvidia0..N, /dev/nvidiactl; char-nvidia-uvm: /dev/nvidia-uvm(-tools);
# char-kfd: /dev/kfd (ROCm compute); char-drm: /dev/dri/card*, /dev/dri/renderD*.
GPU_DEVICES: dict[str, tuple[str, ...]] = {
    "cuda": ("char-nvidia-frontend rw", "char-nvidia-uvm rw"),
    "rocm": ("char-kfd rw", "char-drm rw"),
    "vulkan": ("char-drm rw",),
}
# NVIDIA nodes are 0666 unless the driver is told otherwise (then group video); /dev/kfd and render
# nodes belong to group render, /dev/dri/card* to video.
GPU_GROUPS: dict[str, tuple[str, ...]] = {
    "cuda": ("video",),
    "rocm": ("video", "render"),
    "vulkan": ("video", "render"),
}


def sandbox(backend: str) -> Sandbox:
    """The CPU backend gets the strictest sandbox; GPU backends get exactly their devices and lose what breaks them.

    GPU drivers read /proc/driver (ProcSubset=pid would hide it), CUDA maps writable executable memory
    (MemoryDenyWriteExecute= would kill it), and supplementary groups are not mapped into a private
    user namespace (PrivateUsers=).
    """
    if backend not in GPU_DEVICES:
        return Sandbox(True, (), (), True, True, True)
    return Sandbox(False, GPU_DEVICES[backend], GPU_GROUPS[backend], False, False, False)


def render(template_dir: Path, template: str, context: Mapping[str, Any]) -> str:
    """Render a role's template outside a run, with the roles' Jinja environment (StrictUndefined)."""
    try:
        return roles._environment(template_dir).get_template(template).render(dict(context))
    except jinja2.TemplateError as exc:
        raise LlamafleetError(f"template {template} in {template_dir}: {exc}") from None


class HostVars:
    """One host's variables read for a unit: each value checked, errors naming file, host and key."""

    def __init__(self, name: str, values: Mapping[str, Any], file: str | None = None) -> None:
        self.name, self.values, self.file = name, values, file

    def error(self, key: str, message: str) -> InventoryError:
        return InventoryError(message, file=self.file, where=f"host {self.name}", key=key)

    def whole(self, key: str, minimum: int, optional: bool = False) -> int | None:
        """A whole number of at least `minimum` (None allowed when `optional`)."""
        value = self.values.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"{shorten(repr(value))} is not a whole number >= {minimum}")
        return value

    def flag(self, key: str) -> bool:
        value = self.values.get(key)
        if not isinstance(value, bool):
            raise self.error(key, f"{shorten(repr(value))} is not true or false")
        return value

    def text(self, key: str, optional: bool = False, pattern: re.Pattern | None = None) -> str | None:
        """A string a unit file can carry (no control characters), matching `pattern` when given."""
        value = self.values.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or not _printable(value):
            raise self.error(key, f"{shorten(repr(value))} is not a non-empty single-line string")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"{shorten(repr(value))} does not match {pattern.pattern}")
        return value

    def words(self, key: str, pattern: re.Pattern | None = None, numbers: bool = False) -> tuple[str, ...]:
        """A list of single-line strings (and numbers, when `numbers`), each matching `pattern` when given."""
        value = self.values.get(key)
        value = [] if value is None else value
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, not {shorten(repr(value))}")
        found = []
        for item in value:
            kinds = (str, int, float) if numbers else (str,)
            word = item if isinstance(item, str) else repr(item)
            if isinstance(item, bool) or not isinstance(item, kinds) or not _printable(word):
                raise self.error(key, f"item {shorten(repr(item))} is not a single-line string")
            if pattern is not None and not pattern.fullmatch(word):
                raise self.error(key, f"item {shorten(word)!r} does not match {pattern.pattern}")
            found.append(word)
        return tuple(found)

    def choice(self, key: str, choices: Iterable[str]) -> str:
        value, allowed = self.values.get(key), tuple(choices)
        if value not in allowed:
            raise self.error(key, f"{shorten(repr(value))} is not one of {', '.join(allowed)}")
        return value


def _printable(text: str) -> bool:
    return bool(text) and not any(ord(c) < 32 or ord(c) == 127 for c in text)
