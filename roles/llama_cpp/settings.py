"""Role llama_cpp's settings: its llama_cpp_* knobs read for one host, and the build tag they pin."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from llamafleet import rolesettings
from llamafleet.errors import InventoryError
from llamafleet.inventory import Host
from llamafleet.rolesettings import Refused, choice, knob, whole
from llamafleet.variables import Variable

VERSION_PATTERN = re.compile(r"b(\d+)")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def tag_problem(version: object) -> str | None:
    """Why `version` is not a build tag like b11434, or None when it is one."""
    if isinstance(version, str) and VERSION_PATTERN.fullmatch(version):
        return None
    return f"{version!r} is not a llama.cpp build tag like b11434"


def build_number(version: object, host: str = "all") -> int:
    """The number N of a b<N> tag; InventoryError naming host and key otherwise."""
    problem = tag_problem(version)
    if problem:
        raise InventoryError(problem, where=host, key="llama_cpp_version")
    return int(version[1:])


def _tag(value: Any, variable: Variable) -> str:
    if value in (None, ""):
        raise Refused("is required (a build tag like b11434)")
    problem = tag_problem(value)
    if problem:
        raise Refused(problem)
    return value


def _sha256(value: Any, variable: Variable) -> str | None:
    """A sha256 hex digest, lower-cased; empty means unset."""
    if value == "":
        return None
    if not SHA256_PATTERN.fullmatch(value.lower()):
        raise Refused(f"{value!r} is not a sha256 (64 hex digits)")
    return value.lower()


def _unset_when_empty(value: Any, variable: Variable) -> str | None:
    return value or None


def _strings(value: Any, variable: Variable) -> tuple[str, ...]:
    if value is None or not all(isinstance(item, str) for item in value):
        raise Refused("must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class LlamaCppSettings:
    """One host's llama_cpp_* variables; the URLs with {version} filled in."""

    host: str
    version: str = knob(_tag, variable="llama_cpp_version")
    install: str = knob(choice, variable="llama_cpp_install")
    backend: str = knob(choice, variable="llama_cpp_backend")
    source_url: str = knob(variable="llama_cpp_source_url")
    source_archive: str | None = knob(_unset_when_empty, variable="llama_cpp_source_archive")
    source_sha256: str | None = knob(_sha256, variable="llama_cpp_source_sha256")
    cpu_variants: str = knob(choice, variable="llama_cpp_cpu_variants")
    cmake_args: tuple[str, ...] = knob(_strings, variable="llama_cpp_cmake_args")
    gpu_targets: tuple[str, ...] = knob(_strings, variable="llama_cpp_gpu_targets")
    keep_releases: int = knob(whole(1), variable="llama_cpp_keep_releases")
    release_url: str = knob(variable="llama_cpp_release_url")
    release_sha256: str | None = knob(_sha256, variable="llama_cpp_release_sha256")
    release_toolkit: str | None = knob(_unset_when_empty, variable="llama_cpp_release_toolkit")

    @property
    def build_number(self) -> int:
        return int(self.version[1:])


def settings(host: Host) -> LlamaCppSettings:
    """The host's llama_cpp settings; errors name the host and the variable."""
    found = rolesettings.build(LlamaCppSettings, host, where=host.name)
    return dataclasses.replace(
        found,
        source_url=found.source_url.format(version=found.version),
        release_url=found.release_url.format(version=found.version),
    )
