"""Role llama_cpp on the controller: what each host should run, decided once, each missing artifact built once.

`prepare` hands `Targets` to the role's per-host operations, to role release and to the identity gate.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from llamafleet import controller_files, redaction
from llamafleet.controller_cache import known_sha256
from llamafleet.errors import GateError, InventoryError, OperationError
from llamafleet.facts import FileContent, PathInfo
from llamafleet.inventory import Host
from llamafleet.operations import files, packages
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell
from llamafleet.shell import quote

from . import artifacts, buildscript, cmake, dependencies, groups, release, source
from . import settings as llama_cpp_settings
from .groups import PlatformGroup
from .hostfacts import BUILD_ROOT, BUILT, CPU_FLAGS, INSTALLED, NAME
from .settings import LlamaCppSettings


@dataclass
class Target:
    """What one host should run: its settings, platform group, cache key and (once known) artifact."""

    host: Host
    settings: LlamaCppSettings
    group: PlatformGroup
    source_sha256: str
    key: str
    release_id: str
    installed: dict[str, str]  # release id -> sha256 of its BUILD.json
    artifact: artifacts.Artifact | None = None


@dataclass
class Targets:
    """prepare's hand-off: host name -> what it should run."""

    by_host: dict[str, Target] = field(default_factory=dict)


def validate(run, hosts: list[Host]) -> None:
    """Before any connection: every host's llama_cpp_* settings and source archive are usable (under --check,
    the archive read on the controller is named)."""
    unnamed: set[Path] = set()
    archives: set[Path] = set()
    for host in hosts:
        settings = llama_cpp_settings.settings(host)
        if settings.install == "build":
            _source_sha256(run, host, settings)
            _check_pin_against_archive(run, host, settings, unnamed)
            path = _source_path(run, settings)
            if run.check and path is not None and path not in archives:
                archives.add(path)
                run.say(controller_files.reads_line(path, "llama_cpp_source_archive"))


def _check_pin_against_archive(run, host: Host, settings, unnamed: set[Path]) -> None:
    """A pin the archive contradicts would install code labelled with another build: refuse it."""
    path = _source_path(run, settings)
    if path is None:
        return
    problem = source.pin_problem(settings.version, path)
    if problem:
        raise InventoryError(problem, where=f"host {host.name}", key="llama_cpp_version")
    if source.names_no_build(path) and path not in unnamed:
        unnamed.add(path)
        run.say(f"note: {path} does not name its llama.cpp build; it is installed as {settings.version}, as pinned")


def prepare(run, hosts: list[Host]) -> None:
    """Plan every host, refuse mixed versions up front, build or fetch each missing artifact once."""
    targets: dict[str, Target] = {}
    run.each_host(hosts, lambda host: targets.__setitem__(host.name, _target(run, host)))
    _same_source_everywhere(run, targets)
    by_key: dict[str, list[Target]] = defaultdict(list)
    for name in (h.name for h in hosts if h.name in targets):
        by_key[targets[name].key].append(targets[name])
    for members in by_key.values():
        artifact = artifacts.lookup(members[0].key, members[0].release_id)
        missing = [t for t in members if t.release_id not in t.installed]
        if artifact is None and missing:
            artifact = _produce(run, members)
        for target in members:
            target.artifact = artifact
    run.handoff(Targets).by_host.update(targets)


def _target(run, host: Host) -> Target:
    os_info = run.os(host)
    facts = run.gather(host, [CPU_FLAGS, INSTALLED])
    settings = llama_cpp_settings.settings(host)
    signature = groups.cpu_signature(" ".join(facts[CPU_FLAGS]).split())
    group = groups.platform_group(settings, os_info["id"], os_info["version_id"], os_info["arch"], signature)
    installed = {line.split()[1].split("/")[0]: line.split()[0] for line in facts[INSTALLED] if len(line.split()) == 2}
    if settings.install == "release":
        key, identifier, artifact = release.fetch(settings, group, os_info["arch"])
        return Target(host, settings, group, "", key, identifier, installed, artifact)
    source_sha = _source_sha256(run, host, settings)
    args = cmake.cmake_args(
        settings.version, source_sha, settings.backend, settings.cpu_variants, settings.cmake_args, settings.gpu_targets
    )
    key = groups.artifact_cache_key(source_sha, args, group)
    return Target(
        host, settings, group, source_sha, key, groups.release_id(settings.version, settings.backend, key), installed
    )


def _source_path(run, settings: LlamaCppSettings) -> Path | None:
    if not settings.source_archive:
        return None
    path = Path(settings.source_archive).expanduser()
    return path if path.is_absolute() else run.inventory.path.parent / path


def _source_sha256(run, host: Host, settings: LlamaCppSettings) -> str:
    """The source's sha256: measured from the controller's archive, else the pinned value."""
    path = _source_path(run, settings)
    if path is None:
        if not settings.source_sha256:
            raise InventoryError(
                "is required when the source is downloaded (or set llama_cpp_source_archive)",
                where=f"host {host.name}",
                key="llama_cpp_source_sha256",
            )
        return settings.source_sha256
    if not path.is_file():
        what = "not a file" if path.exists() else "no such file"
        raise InventoryError(
            f"{what} on the controller: {path}", where=f"host {host.name}", key="llama_cpp_source_archive"
        )
    problem = source.archive_problem(path)
    if problem:
        raise InventoryError(f"{path} {problem}", where=f"host {host.name}", key="llama_cpp_source_archive")
    stat = path.stat()
    actual = _archive_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    if settings.source_sha256 and settings.source_sha256 != actual:
        raise InventoryError(
            f"{path} has sha256 {actual}, not the pinned one", where=f"host {host.name}", key="llama_cpp_source_sha256"
        )
    return actual


@functools.lru_cache(maxsize=8)
def _archive_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hash each archive once, however many hosts and runs use it (a changed file is hashed anew)."""
    return known_sha256(Path(path))


def _same_source_everywhere(run, targets: dict[str, Target]) -> None:
    """Mixed versions break the RPC protocol: stop before building anything."""
    if not targets:
        return
    head = run.group("head")[0]
    reference = targets.get(head) or next(iter(targets.values()))
    wanted = (reference.settings.version, reference.source_sha256)
    odd = [t for t in targets.values() if (t.settings.version, t.source_sha256) != wanted]
    if odd:
        details = "; ".join(f"{t.host.name} wants {t.settings.version} (source {t.source_sha256[:12]})" for t in odd)
        raise GateError(
            f"{details}, but {reference.host.name} wants {wanted[0]} (source {wanted[1][:12]}): "
            "every host must run the same llama.cpp"
        )


def _produce(run, members: list[Target]) -> artifacts.Artifact | None:
    """Build the group's artifact on one of its hosts (a member of group builders when there is one)."""
    builders = set(run.group("builders"))
    builder = next((t for t in members if t.host.name in builders), members[0])
    work = f"{BUILD_ROOT}/{builder.key}"
    script = buildscript.render_build_script(
        builder.settings, builder.group, _remote_source(builder), builder.source_sha256, work
    )
    if not run.check:
        run.say(
            f"{builder.host.name}: llama.cpp {builder.settings.version} for {builder.group.name} is built here "
            "unless it was before (minutes; the other hosts of the group get the result)"
        )
    if run.converge(builder.host, NAME, _build_host_operations(run, builder, work, script)) is None:
        raise OperationError(f"{builder.host.name}: building llama.cpp for {builder.group.name} failed (see above)")
    if run.check:
        return None
    result = run.remote(builder.host, quote("cat -- %s", f"{work}/{BUILT}"))
    built = buildscript.parse_build_output(result.stdout.splitlines())
    artifact = _fetch(run, builder, built)
    run.say(
        f"{builder.host.name}: built in {built.get('build_seconds', '?')} s, "
        f"{artifact.path.stat().st_size // 1024} KiB cached for the other hosts"
    )
    return artifact


def _remote_source(target: Target) -> str:
    return f"{BUILD_ROOT}/sources/{target.source_sha256}.tar.gz"


def _build_host_operations(run, target: Target, work: str, script: str) -> list[Operation]:
    """Build dependencies, the source pushed from the controller, build.sh, and the build itself."""
    os_info = run.os(target.host)
    deps = dependencies.build_dependencies(os_info["id"], target.settings.backend, [os_info["family"]])
    return [
        packages.present(list(deps.packages), os_info["family"]),
        files.directory(BUILD_ROOT, mode="0700"),
        files.directory(f"{BUILD_ROOT}/sources", mode="0700"),
        files.directory(work, mode="0700"),
        files.file(f"{work}/build.sh", script, mode="0700"),
        _source_pushed(run, target),
        built(target, work, script),
    ]


def _source_pushed(run, target: Target) -> Operation:
    """The source archive on the build host: the controller's archive, else downloaded by the controller.

    Hosts never need internet access; a download is checked against llama_cpp_source_sha256.
    """
    remote = _remote_source(target)
    local = _source_path(run, target.settings)
    if local is None and run.check:
        shown = redaction.url_shown(target.settings.source_url)
        return Operation(
            f"source {remote}",
            [PathInfo(remote, True)],
            lambda facts: (
                _source_present(facts, remote, target.source_sha256)
                or Change((), f"would download {shown} on the controller and push it")
            ),
        )
    if local is None:
        local = release.download_checked(target.settings.source_url, target.source_sha256, target.host.name)
    return files.copy(remote, local, target.source_sha256, mode="0600")


def _source_present(facts: Facts, remote: str, sha256: str) -> NoChange | None:
    state = facts[PathInfo(remote, True)]
    return NoChange(f"sha256 {sha256[:12]} matches") if state is not None and state.sha256 == sha256 else None


def built(target: Target, work: str, script: str) -> Operation:
    """The group's artifact built on this host by build.sh: found again when an earlier run finished it."""
    script_sha = hashlib.sha256(script.encode()).hexdigest()
    report = FileContent(f"{work}/{BUILT}")
    artifact = PathInfo(f"{work}/artifact.tar.gz", True)

    def planner(facts: Facts):
        text = facts[report]
        if text:
            try:
                found = buildscript.parse_build_output(text.splitlines())
            except OperationError:
                found = {}
            state = facts[artifact]
            if (
                found.get("script_sha256") == script_sha
                and state is not None
                and state.sha256 == found.get("artifact_sha256")
            ):
                return NoChange(f"built before in {work} (artifact sha256 {state.sha256[:12]})")
        build = Shell(quote("bash %s/build.sh", work), progress=f"build llama.cpp {target.settings.version}")
        return Change((build,), f"no artifact for {target.group.name} in the cache: build here (minutes)")

    label = f"llama.cpp {target.settings.version} built for {target.group.name}"
    return Operation(label, [report, artifact], planner)


def _fetch(run, target: Target, built: dict[str, str]) -> artifacts.Artifact:
    slot = artifacts.slot(target.key)
    artifacts.private_dir(slot)
    with tempfile.NamedTemporaryFile(dir=slot, prefix=".fetch-", delete=False) as handle:
        local = Path(handle.name)
    try:
        run.fetch(target.host, built["artifact"], local, sha256=built["artifact_sha256"])
        return artifacts.store(target.key, local, built["artifact_sha256"], target.release_id)
    finally:
        local.unlink(missing_ok=True)
