"""The controller's artifact cache: one packed release per key, built once, pushed to many hosts."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafleet.controller_cache import cache_root, known_sha256, private_dir  # noqa: F401 - used here and by release.py
from llamafleet.errors import OperationError
from llamafleet.operations.files import source_sha256

ARTIFACT = "artifact.tar.gz"


@dataclass(frozen=True)
class Artifact:
    """A packed release in the cache: the tarball, its sha256 and the BUILD.json it carries."""

    path: Path
    sha256: str
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def files(self) -> dict[str, str]:
        return dict(self.manifest.get("files", {}))


def slot(key: str) -> Path:
    return cache_root() / "artifacts" / key


def lookup(key: str, release_id: str) -> Artifact | None:
    """The cached artifact for `key`, or None; a corrupt entry is an error, never silently reused."""
    path = slot(key) / ARTIFACT
    if not path.is_file():
        return None
    recorded = (
        (slot(key) / f"{ARTIFACT}.sha256").read_text().split()[0]
        if (slot(key) / f"{ARTIFACT}.sha256").exists()
        else None
    )
    actual = known_sha256(path)  # hashed again whenever the file's stat changed
    if recorded != actual:
        raise OperationError(
            f"artifact cache entry {path} is corrupt (sha256 {actual[:12]}, recorded {recorded}); delete it"
        )
    raw = _manifest(path, release_id, actual)
    return Artifact(path, actual, json.loads(raw), hashlib.sha256(raw).hexdigest())


def _manifest(path: Path, release_id: str, artifact_sha256: str) -> bytes:
    """The artifact's BUILD.json, unpacked once and kept beside it under the artifact's sha256."""
    kept = path.with_name(f"BUILD-{artifact_sha256[:16]}.json")
    if kept.is_file():
        return kept.read_bytes()
    raw = read_member(path, f"{release_id}/BUILD.json")
    partial = kept.with_suffix(".part")
    partial.write_bytes(raw)
    os.replace(partial, kept)
    return raw


def store(key: str, downloaded: Path, expected_sha256: str, release_id: str) -> Artifact:
    """Move a freshly fetched artifact into the cache after checking its sha256."""
    actual = sha256_file(downloaded)
    if actual != expected_sha256:
        downloaded.unlink(missing_ok=True)
        raise OperationError(
            f"fetched artifact has sha256 {actual[:12]}, the build host reported {expected_sha256[:12]}"
        )
    private_dir(slot(key))
    (slot(key) / f"{ARTIFACT}.sha256").write_text(f"{actual}  {ARTIFACT}\n")
    os.replace(downloaded, slot(key) / ARTIFACT)
    found = lookup(key, release_id)
    assert found is not None
    return found


def read_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile(name)
        except KeyError:
            member = None
        if member is None:
            raise OperationError(f"{archive} holds no {name}")
        return member.read()


sha256_file = source_sha256  # streamed, OpenSSL-backed hashlib
