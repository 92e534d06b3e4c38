"""Role llama_cpp: one identical, pinned llama.cpp on every host, built once per platform group."""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafleet import paths
from llamafleet.controller_cache import known_sha256
from llamafleet.errors import GateError, InventoryError, OperationError
from llamafleet.facts import CommandOutput, FileContent, PathInfo
from llamafleet.inventory import Host
from llamafleet.operations import files, packages
from llamafleet.operations.base import Change, Facts, NoChange, Operation, Shell, Upload
from llamafleet.shell import quote

from . import artifacts, buildscript, identity, plan, release, source

NAME = "llama_cpp"
BUILD_ROOT = paths.BUILD_DIR
BUILT = "built.env"  # what build.sh reports last, kept beside its artifact
INCOMING = paths.INCOMING_DIR
RELEASES = plan.RELEASES_DIR
CURRENT = plan.CURRENT_LINK
PREVIOUS = paths.PREVIOUS_LINK
CPU_FLAGS = CommandOutput("grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2")
# Each release's files as installed: their stat listing, then `@@sums` and their sha256 (plan.SUMS_*, written by
# install.sh.j2). While the listing holds, no file was written since it was hashed.
SUMS_RECORD = plan.SUMS_RECORD
_HASHES = plan.SUMS_HASHES
_RECORDED = f'[ -f {SUMS_RECORD} ] && [ "$(sed \'/^@@sums$/,$d\' {SUMS_RECORD})" = "$({plan.SUMS_LISTING})" ]'
# The running release's BUILD.json and the checksums of its files, for the identity gate. Read
# with the role's other facts: when nothing changed on a host the gate needs no round trip of its own.
# The checksums recorded at install are used while no file's stat changed (a file replaced or written
# since changes its inode or ctime); otherwise every file is hashed now.
IDENTITY = CommandOutput(
    f"if [ -f {CURRENT}/BUILD.json ]; then cat {CURRENT}/BUILD.json; echo '@@files'; "
    f"cd {CURRENT}/ && if {_RECORDED}; then sed '1,/^@@sums$/d' {SUMS_RECORD}; else {_HASHES}; fi; fi"
)
# The same, every file hashed now (invoke verify measures, it does not trust a record).
IDENTITY_MEASURED = CommandOutput(
    f"if [ -f {CURRENT}/BUILD.json ]; then cat {CURRENT}/BUILD.json; echo '@@files'; cd {CURRENT}/ && {_HASHES}; fi"
)
INSTALLED = CommandOutput(f'cd {RELEASES} 2>/dev/null && for f in */BUILD.json; do [ -f "$f" ] && sha256sum "$f"; done')
# Read with the run's first batch (runner.prefetch): prepare needs no round trip of its own.
PREFETCH = (CPU_FLAGS, INSTALLED)


@dataclass
class Target:
    """What one host should run: its settings, platform group, cache key and (once known) artifact."""

    host: Host
    settings: plan.LlamaCppSettings
    group: plan.PlatformGroup
    source_sha256: str
    key: str
    release_id: str
    installed: dict[str, str]  # release id -> sha256 of its BUILD.json
    artifact: artifacts.Artifact | None = None


# -- controller side: validate, decide, build once, cache ----------------------------------------


def validate(run, hosts: list[Host]) -> None:
    """Before any connection: every host's llama_cpp_* settings and source archive are usable."""
    unnamed: set[Path] = set()
    for host in hosts:
        settings = plan.settings_for_host(host.name, host.vars)
        if settings.install == "build":
            _source_sha256(run, host, settings)
            _check_pin_against_archive(run, host, settings, unnamed)


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
    run.shared[NAME] = targets


def _target(run, host: Host) -> Target:
    os_info = run.os(host)
    facts = run.gather(host, [CPU_FLAGS, INSTALLED])
    settings = plan.settings_for_host(host.name, host.vars)
    signature = plan.cpu_signature(" ".join(facts[CPU_FLAGS]).split())
    group = plan.platform_group(settings, os_info["id"], os_info["version_id"], os_info["arch"], signature)
    installed = {line.split()[1].split("/")[0]: line.split()[0] for line in facts[INSTALLED] if len(line.split()) == 2}
    if settings.install == "release":
        key, identifier, artifact = release.fetch(settings, group, os_info["arch"])
        return Target(host, settings, group, "", key, identifier, installed, artifact)
    source_sha = _source_sha256(run, host, settings)
    args = plan.cmake_args(
        settings.version, source_sha, settings.backend, settings.cpu_variants, settings.cmake_args, settings.gpu_targets
    )
    key = plan.artifact_cache_key(source_sha, args, group)
    return Target(
        host, settings, group, source_sha, key, plan.release_id(settings.version, settings.backend, key), installed
    )


def _source_path(run, settings: plan.LlamaCppSettings) -> Path | None:
    if not settings.source_archive:
        return None
    path = Path(settings.source_archive).expanduser()
    return path if path.is_absolute() else run.inventory.path.parent / path


def _source_sha256(run, host: Host, settings: plan.LlamaCppSettings) -> str:
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
        raise InventoryError(
            f"no such file on the controller: {path}", where=f"host {host.name}", key="llama_cpp_source_archive"
        )
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
    deps = plan.build_dependencies(os_info["id"], target.settings.backend, [os_info["family"]])
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
        return Operation(
            f"source {remote}",
            [PathInfo(remote, True)],
            lambda facts: (
                _source_present(facts, remote, target.source_sha256)
                or Change((), f"would download {target.settings.source_url} on the controller and push it")
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


# -- every host: runtime, install, switch, prune -------------------------------------------------


def operations(ctx):
    target: Target = ctx.run.shared[NAME][ctx.name]
    runtime = plan.runtime_dependencies(ctx.os["id"], ctx.os["version_id"], target.settings.backend, [ctx.os["family"]])
    yield packages.present(list(runtime.packages), ctx.os["family"])
    yield staged(target)


def staged(target: Target) -> Operation:
    """releases/<id> holds the artifact, unpacked beside the running release (which keeps serving).

    A current release whose files differ from the artifact (a binary replaced by hand) is reinstalled
    from the controller's cache, the differing files named: a converge tool converges.
    """
    manifest = PathInfo(f"{RELEASES}/{target.release_id}/BUILD.json", True)
    current = PathInfo(CURRENT, False)

    def planner(facts: Facts):
        state, link = facts[manifest], facts[current]
        wanted_sha = target.artifact.manifest_sha256 if target.artifact else None
        present = state is not None and (wanted_sha is None or state.sha256 == wanted_sha)
        running = link is not None and link.target == f"releases/{target.release_id}"
        drifted = _drifted(facts[IDENTITY], target) if present and running else []
        if present and not drifted:
            return NoChange(f"release {target.release_id} staged")
        why = (
            "not staged"
            if state is None
            else "BUILD.json differs"
            if not present
            else f"files differ from the artifact, reinstalled: {', '.join(drifted)}"
        )
        return Change(tuple(_stage_steps(target)), why)

    return Operation(f"llama.cpp {target.release_id} staged", [manifest, current, IDENTITY], planner)


def _drifted(lines: list[str] | None, target: Target) -> list[str]:
    """Files of the current release whose sha256 is not the artifact's (a binary replaced by hand, say)."""
    text = "\n".join(lines or [])
    if "@@files" not in text or target.artifact is None:
        return []
    measured = identity.with_measured_files({}, text.partition("@@files")[2])["measured"]
    wanted = target.artifact.files
    return sorted(path for path in set(measured) | set(wanted) if measured.get(path) != wanted.get(path))


def _stage_steps(target: Target) -> list:
    staged_file = f"{INCOMING}/llama.cpp-{target.release_id}.tar.gz"
    artifact = target.artifact
    if artifact is None:
        return [Shell(quote("echo no artifact for %s on the controller >&2; exit 1", target.release_id))]
    return [
        Shell(quote("rm -rf %s/%s", RELEASES, target.release_id)),
        Upload(staged_file, artifact.path, "0600", sha256=artifact.sha256),
        Shell(quote("bash -c %s", _install_script(target, "stage", staged_file, artifact.sha256))),
        Shell(quote("rm -f %s", staged_file)),
    ]


def _install_script(target: Target, mode: str, artifact: str = "-", sha256: str = "-") -> str:
    context = buildscript.install_script_context(
        artifact, sha256, target.release_id, target.settings.keep_releases, mode=mode
    )
    return buildscript.render_template(plan.INSTALL_TEMPLATE, context)


def switched(target: Target, on_switch: Callable[[], None]) -> Operation:
    """current points at the staged release (the one before kept as previous); at most N releases kept."""
    current = PathInfo(CURRENT, False)
    count = CommandOutput(quote("find %s -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l", RELEASES))
    keep = target.settings.keep_releases

    def planner(facts: Facts):
        link = facts[current]
        on = link is not None and link.target == f"releases/{target.release_id}"
        releases = int((facts[count] or ["0"])[0] or 0)
        if on and releases <= keep + 1:  # + previous, which is never pruned
            return NoChange(f"current is {target.release_id}")
        why = f"{releases} releases, keeping {keep}" if on else f"current is {link.target if link else 'missing'}"
        return Change((Shell(quote("bash -c %s", _install_script(target, "switch"))),), why)

    # A new release restarts what runs it (handled by roles rpc_worker and head, later in the run).
    restarts = ("restart llama-rpc", "restart llama-server")
    operation = Operation(f"llama.cpp {target.release_id} current", [current, count, IDENTITY], planner, restarts)
    operation.after.append(on_switch)
    return operation


# -- the identity gate ---------------------------------------------------------------------------


def identity_gate(run, hosts: list[Host], role: str) -> list[str]:
    """Every host must run the same source; within a platform group every file must match the artifact.

    Run by role release once current is switched, with the facts its operations read (`role`).
    """
    manifests: dict[str, Any] = {}
    run.each_host(hosts, lambda host: manifests.__setitem__(host.name, _read_identity(run, host, role)))
    targets: dict[str, Target] = run.shared.get(NAME, {})
    group_files = {t.group.name: t.artifact.files for t in targets.values() if t.artifact}
    head = run.group("head")[0]
    problems = identity.identity_problems(
        manifests, {h.name: h.vars for h in hosts}, head if head in manifests else None, group_files
    )
    if problems:
        problems.append(_remedy(problems, manifests))
    return problems


def _remedy(problems: list[str], manifests: dict[str, Any]) -> str:
    """What to do about the hosts named in the problems."""
    odd = sorted({p.split(":", 1)[0] for p in problems if p.split(":", 1)[0] in manifests})
    steps = [
        f"on {h} remove {RELEASES}/{manifests[h]['release_id']}" for h in odd if (manifests[h] or {}).get("release_id")
    ]
    fix = "; ".join(steps) + ", then provision again" if steps else "provision the hosts named above"
    return f"stopped before any service (re)start. To reinstall: {fix}"


def _read_identity(run, host: Host, role: str) -> dict[str, Any] | None:
    settled = run.settled_facts(host, role)
    if settled is not None and IDENTITY in settled:
        text = "\n".join(settled[IDENTITY])
    else:  # read since the host last changed (the run's first batch, for deploy), else now
        text = "\n".join(run.gather(host, [IDENTITY])[IDENTITY] or [])
    if "@@files" not in text:
        return None
    manifest_text, _, measured = text.partition("@@files")
    try:
        manifest = json.loads(manifest_text)
    except ValueError:
        return {"version": "unreadable BUILD.json", "files": {}}
    return identity.with_measured_files(manifest, measured)
