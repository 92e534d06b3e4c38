"""systemd unit text for the services: Exec= lines quoted as systemd reads them, the sandbox per backend."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths, templating
from .errors import LlamafleetError

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


def service_context(command: list[str], user: str, backend: str, restart_seconds: int) -> dict[str, Any]:
    """What every llamafleet unit template reads: the command line, the service user, the backend's sandbox."""
    return {
        "exec_start": exec_line(command),
        "user": user,
        "working_directory": paths.BIN_DIR,
        "restart_seconds": restart_seconds,
        "backend": backend,
        "sandbox": sandbox(backend),
    }


def render(template_dir: Path, template: str, context: Mapping[str, Any]) -> str:
    """Render a role's template outside a run, with the roles' Jinja environment (StrictUndefined)."""
    import jinja2  # with the first template, not with this module

    try:
        return templating.render(template_dir, template, dict(context))
    except jinja2.TemplateError as exc:
        raise LlamafleetError(f"template {template} in {template_dir}: {exc}") from None
