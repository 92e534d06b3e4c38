"""The identity gate: every host runs the same llama.cpp, every file matches its group's artifact."""

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from llamafleet.errors import OperationError

from .settings import LlamaCppSettings


def with_measured_files(manifest: Mapping[str, Any], sha256sum_output: str) -> dict[str, Any]:
    """A host's BUILD.json plus what `sha256sum` says its files are now (relative paths)."""
    measured = {}
    for line in sha256sum_output.splitlines():
        digest, _, path = line.strip().partition(" ")
        if digest:
            measured[path.lstrip(" *").removeprefix("./")] = digest
    return {**manifest, "measured": measured}


VERSION_OUTPUT_PATTERNS = (
    re.compile(r"version: \S+ \(build (?P<number>\d+), commit (?P<commit>[^)\s]+)\)"),
    re.compile(r"version: (?P<number>\d+) \((?P<commit>[^)\s]+)\)"),  # older builds
)


def parse_version_output(text: str) -> tuple[int, str]:
    """(build number, commit) from `llama-server --version` / `ggml-rpc-server --version` (stderr)."""
    for pattern in VERSION_OUTPUT_PATTERNS:
        match = pattern.search(text)
        if match:
            return int(match["number"]), match["commit"]
    raise OperationError(f"unrecognised llama.cpp --version output: {text.strip()[:200]!r}")


RPC_BANNER_PATTERN = re.compile(r"Starting RPC server v(?P<protocol>\d+\.\d+\.\d+)")


def parse_rpc_server_banner(text: str) -> str:
    """The RPC protocol version from the worker's banner; it has no --version, so its build is in BUILD.json."""
    match = RPC_BANNER_PATTERN.search(text)
    if not match:
        raise OperationError(f"no 'Starting RPC server vX.Y.Z' banner in: {text.strip()[:200]!r}")
    return match["protocol"]


# --------------------------------------------------------------------------- identity gate


def _short(digest: str | None) -> str:
    return f"{digest[:4]}.." if digest else "none"


def _identity(manifest: Mapping[str, Any]) -> str:
    return f"{manifest.get('version')} (source {_short(manifest.get('source_sha256'))})"


def _group_label(manifest: Mapping[str, Any]) -> str:
    return str(manifest.get("platform", {}).get("name", "unknown"))


def _group_id(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest.get("platform", {}), sort_keys=True)


def _reference_host(manifests: Mapping[str, Mapping[str, Any] | None], preferred: str | None) -> str | None:
    if preferred and manifests.get(preferred):
        return preferred
    installed = [host for host in sorted(manifests) if manifests[host]]
    if not installed:
        return None
    votes = Counter((manifests[host]["version"], manifests[host].get("source_sha256")) for host in installed)
    winner = votes.most_common(1)[0][0]
    return next(
        host for host in installed if (manifests[host]["version"], manifests[host].get("source_sha256")) == winner
    )


def _inventory_problems(host: str, manifest: Mapping[str, Any], settings: LlamaCppSettings) -> list[str]:
    wanted = {"version": settings.version, "install": settings.install, "backend": settings.backend}
    platform = manifest.get("platform", {})
    wanted_platform = {
        "cpu_variants": settings.cpu_variants,
        "extra_cmake_args": list(settings.cmake_args),
        "gpu_targets": list(settings.gpu_targets),
    }
    problems = [
        f"{host}: installed {key} {manifest.get(key)} but the inventory wants {value}"
        for key, value in wanted.items()
        if manifest.get(key) != value
    ]
    problems += [
        f"{host}: installed {key} {platform.get(key)} but the inventory wants {value}"
        for key, value in wanted_platform.items()
        if platform.get(key) != value
    ]
    if settings.source_sha256 and manifest.get("source_sha256") not in (None, settings.source_sha256):
        found, wanted = _short(manifest.get("source_sha256")), _short(settings.source_sha256)
        problems.append(f"{host}: source {found} but llama_cpp_source_sha256 is {wanted}")
    return problems


def _file_problems(host: str, files: Mapping[str, str], expected: Mapping[str, str], group: str) -> list[str]:
    problems = []
    for path in sorted(set(expected) | set(files)):
        found, wanted = files.get(path), expected.get(path)
        if wanted is None:
            problems.append(f"{host}: {path} is not part of the build of group {group}")
        elif found is None:
            problems.append(f"{host}: {path} is missing from the build of group {group} ({_short(wanted)})")
        elif found != wanted:
            problems.append(
                f"{host}: {path} sha256 {_short(found)} differs from the build of group {group} ({_short(wanted)})"
            )
    return problems


def _group_reference_files(
    members: Sequence[str],
    manifests: Mapping[str, Mapping[str, Any]],
    group_files: Mapping[str, Mapping[str, str]],
    group: str,
) -> Mapping[str, str]:
    if group in group_files:
        return group_files[group]
    # Without the controller's artifact, the files recorded at build time by most members are the reference.
    votes = Counter(json.dumps(manifests[host].get("files", {}), sort_keys=True) for host in members)
    return json.loads(votes.most_common(1)[0][0])


def identity_problems(
    manifests: Mapping[str, Mapping[str, Any] | None],
    wanted: Mapping[str, LlamaCppSettings],
    reference_host: str | None = None,
    group_files: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Every reason the cluster does not run one identical llama.cpp; [] when it does.

    manifests: host -> its BUILD.json (with "measured" from with_measured_files when known), None if
    nothing is installed. wanted: host -> its settings, what the inventory asks for. group_files: platform
    group name -> the artifact's {path: sha256}.
    """
    problems = [f"{host}: llama.cpp is not installed" for host in sorted(manifests) if not manifests[host]]
    installed = {host: manifest for host, manifest in manifests.items() if manifest}
    reference = _reference_host(manifests, reference_host)
    for host in sorted(installed):
        manifest = installed[host]
        problems += _inventory_problems(host, manifest, wanted[host])
        ref = installed[reference] if reference else manifest
        if (manifest.get("version"), manifest.get("source_sha256")) != (ref.get("version"), ref.get("source_sha256")):
            problems.append(f"{host}: llama.cpp {_identity(manifest)} but {reference} runs {_identity(ref)}")
    groups: dict[str, list[str]] = {}
    for host in sorted(installed):
        groups.setdefault(_group_id(installed[host]), []).append(host)
    for members in groups.values():
        label = _group_label(installed[members[0]])
        expected = _group_reference_files(members, installed, group_files or {}, label)
        for host in members:
            observed = installed[host].get("measured", installed[host].get("files", {}))
            problems += _file_problems(host, observed, expected, label)
    return problems
