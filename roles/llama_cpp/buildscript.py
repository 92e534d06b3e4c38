"""build.sh and BUILD.json: the script that builds a platform group's artifact, and what it prints."""

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llamafleet import paths, templating
from llamafleet.errors import OperationError

from . import cmake, dependencies, groups, sums
from .groups import PlatformGroup
from .settings import LlamaCppSettings

TEMPLATES = Path(__file__).resolve().parent / "templates"
BUILD_TEMPLATE = "build.sh.j2"
INSTALL_TEMPLATE = "install.sh.j2"
MANIFEST_SCHEMA = 1

# --------------------------------------------------------------------------- BUILD.json


def manifest_head(
    version: str,
    install: str,
    source_sha256: str | None,
    backend: str,
    configure_args: Sequence[str],
    group: PlatformGroup,
    identifier: str,
) -> dict[str, Any]:
    """Everything in BUILD.json except the file checksums, in the order it is written."""
    return {
        "schema": MANIFEST_SCHEMA,
        "version": version,
        "install": install,
        "source_sha256": source_sha256,
        "backend": backend,
        "cmake_args": list(configure_args),
        "platform": group.as_dict(),
        "release_id": identifier,
    }


def build_manifest(
    head: Mapping[str, Any],
    files: Mapping[str, str],
    links: Mapping[str, str] | None = None,
    openssl: str | None = None,
) -> dict[str, Any]:
    """The BUILD.json document: head fields, the OpenSSL library llama-server links (None: it speaks no TLS),
    {relative path: sha256} of every file, {symlink: target}."""
    return {
        **head,
        "openssl": openssl,
        "files": dict(sorted(files.items())),
        "links": dict(sorted((links or {}).items())),
    }


OPENSSL_LIBRARY = re.compile(rb"libssl\.so[.0-9]*")
SERVER_FILES = ("libllama-server-impl.so", "llama-server")  # where llama-server's HTTP code is, by tree


def openssl_of(bin_dir: Path) -> str | None:
    """The OpenSSL library llama-server links, as build.sh finds it: named in its server code's files."""
    for name in SERVER_FILES:
        try:
            found = OPENSSL_LIBRARY.search((bin_dir / name).read_bytes())
        except OSError:
            continue
        if found:
            return found.group().decode()
    return None


def manifest_head_json(head: Mapping[str, Any]) -> str:
    """The head as JSON text that build.sh extends with the files it hashed."""
    return json.dumps(dict(head), indent=2)


# --------------------------------------------------------------------------- rendering and build output


def _shell_words(values: Iterable[str]) -> str:
    return " ".join(shlex.quote(value) for value in values)


def build_script_context(
    settings: LlamaCppSettings,
    group: PlatformGroup,
    source_archive: str,
    source_sha256: str,
    work_dir: str,
) -> dict[str, str]:
    """Variables of build.sh.j2, each already a quoted shell word (or words), so no custom filter is needed."""
    configure_args = cmake.cmake_args(
        settings.version,
        source_sha256,
        settings.backend,
        settings.cpu_variants,
        settings.cmake_args,
        settings.gpu_targets,
    )
    identifier = groups.release_id(
        settings.version, settings.backend, groups.artifact_cache_key(source_sha256, configure_args, group)
    )
    head = manifest_head(settings.version, "build", source_sha256, settings.backend, configure_args, group, identifier)
    required = dependencies.build_tools(settings.backend)
    return {
        "backend": shlex.quote(settings.backend),
        "group_name": shlex.quote(group.name),
        "release_id": shlex.quote(identifier),
        "source_archive": shlex.quote(source_archive),
        "source_sha256": shlex.quote(source_sha256),
        "work_dir": shlex.quote(work_dir),
        "cmake_args": _shell_words(configure_args),
        "build_targets": _shell_words(cmake.build_targets()),
        "worker_targets": _shell_words(cmake.WORKER_TARGETS),
        "required_tools": _shell_words(required),
        "manifest_head": shlex.quote(manifest_head_json(head)),
    }


def render_template(name: str, context: Mapping[str, str]) -> str:
    """Render one of the role's templates with the engine's template environment."""
    return templating.render(TEMPLATES, name, dict(context))


def render_build_script(
    settings: LlamaCppSettings,
    group: PlatformGroup,
    source_archive: str,
    source_sha256: str,
    work_dir: str,
) -> str:
    """build.sh for one platform group."""
    return render_template(
        BUILD_TEMPLATE, build_script_context(settings, group, source_archive, source_sha256, work_dir)
    )


def install_script_context(
    artifact: str,
    artifact_sha256: str,
    identifier: str,
    keep_releases: int,
    install_root: str = paths.INSTALL_ROOT,
    mode: str = "stage",
) -> dict[str, str]:
    """Variables of install.sh.j2, quoted: mode stage unpacks to releases/<id>; mode switch points
    current at it (the release before becomes previous) and keeps the newest N."""
    if mode not in ("stage", "switch"):
        raise ValueError(f"install mode {mode!r}")
    return {
        "mode": mode,
        "artifact": shlex.quote(artifact),
        "artifact_sha256": shlex.quote(artifact_sha256),
        "release_id": shlex.quote(identifier),
        "install_root": shlex.quote(install_root),
        "keep_releases": shlex.quote(str(int(keep_releases))),
        "sums_record": sums.SUMS_RECORD,
        "sums_listing": sums.SUMS_LISTING,  # commands, not values: the same text hostfacts.IDENTITY compares with
        "sums_hashes": sums.SUMS_HASHES,
    }


def parse_build_output(lines: Iterable[str]) -> dict[str, str]:
    """The LLAMAFLEET_* facts build.sh prints last: ARTIFACT becomes artifact + artifact_sha256."""
    facts: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.strip().partition("=")
        if not sep or not name.startswith("LLAMAFLEET_"):
            continue
        key = name.removeprefix("LLAMAFLEET_").lower()
        if key == "artifact":
            facts["artifact"], _, facts["artifact_sha256"] = value.rpartition(" ")
        else:
            facts[key] = value
    if "artifact" not in facts:
        raise OperationError("build output has no LLAMAFLEET_ARTIFACT line: the build did not finish")
    return facts
