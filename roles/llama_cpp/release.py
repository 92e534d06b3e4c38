"""Official release tarballs: downloaded once on the controller, verified, repacked as an artifact."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
import zipfile
from pathlib import Path

from llamafleet import redaction
from llamafleet.errors import InventoryError

from . import artifacts, assets, buildscript, groups

_LOCK = threading.Lock()


def fetch(settings, group, arch: str) -> tuple[str, str, artifacts.Artifact]:
    """(cache key, release id, artifact) for a host installing an official release."""
    wanted = assets.release_assets(settings, arch)
    with _LOCK:  # hosts of one group ask at the same time: download once
        downloads, shas = zip(*(_download(asset) for asset in wanted), strict=True)
        if settings.release_sha256 and shas[0] != settings.release_sha256:
            raise InventoryError(
                f"{wanted[0].name} has sha256 {shas[0]}, not the pinned one",
                where=f"host {settings.host}",
                key="llama_cpp_release_sha256",
            )
        key = assets.release_cache_key(wanted, shas)
        identifier = groups.release_id(settings.version, settings.backend, key)
        found = artifacts.lookup(key, identifier)
        if found is None:
            found = _repack(settings, group, key, identifier, downloads)
    return key, identifier, found


def download_checked(url: str, sha256: str, host: str) -> Path:
    """A source archive the controller downloads once (download cache) and pushes; it must match sha256."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])[:120]
    with _LOCK:  # every build host of a run wants the same archive: download it once
        path, actual = _download(assets.ReleaseAsset(name or "source.tar.gz", url, ""))
    if actual != sha256:
        raise InventoryError(
            f"{redaction.url_shown(url)} has sha256 {actual}, not the pinned one (the download is kept in "
            f"{path.parent}; delete it to download again)",
            where=f"host {host}",
            key="llama_cpp_source_sha256",
        )
    return path


def _download(asset) -> tuple[Path, str]:
    """The asset in the download cache and its sha256 (resumable; checked again whenever it is reused)."""
    from llamafleet import download  # requests: imported only by a run that downloads

    target = download.slot(asset.url) / asset.name
    return target, download.fetch(asset.url, target)


def _repack(settings, group, key: str, identifier: str, downloads: list[Path]) -> artifacts.Artifact:
    """Flat bin/ with everything the release ships, a BUILD.json, packed like a build artifact."""
    with tempfile.TemporaryDirectory(prefix="llamafleet-release-") as tmp:
        stage = Path(tmp) / identifier
        (stage / "bin").mkdir(parents=True)
        for archive in downloads:
            _unpack_flat(archive, stage / "bin")
        files, links = _inventory(stage)
        head = buildscript.manifest_head(settings.version, "release", None, settings.backend, [], group, identifier)
        manifest = buildscript.build_manifest(head, files, links, buildscript.openssl_of(stage / "bin"))
        (stage / "BUILD.json").write_text(json.dumps(manifest, indent=2) + "\n")
        packed = Path(tmp) / "artifact.tar.gz"
        _pack(stage, packed)
        return artifacts.store(key, packed, artifacts.sha256_file(packed), identifier)


def _unpack_flat(archive: Path, into: Path) -> None:
    """Extract an archive's files into one folder, dropping its single top folder."""
    with tempfile.TemporaryDirectory() as tmp:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(tmp)  # noqa: S202 - zipfile strips absolute and ".." paths
        else:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")  # noqa: S202 - the data filter refuses unsafe members
        root = Path(tmp)
        entries = list(root.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        for entry in root.iterdir():
            destination = into / entry.name
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, destination, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, destination, follow_symlinks=False)


def _inventory(stage: Path) -> tuple[dict[str, str], dict[str, str]]:
    files, links = {}, {}
    for path in sorted(stage.rglob("*")):
        relative = str(path.relative_to(stage))
        if path.is_symlink():
            links[relative] = os.readlink(path)
        elif path.is_file():
            files[relative] = artifacts.sha256_file(path)
    return files, links


def _pack(stage: Path, packed: Path) -> None:
    """Deterministic tar.gz: sorted names, owner 0, mtime 0, no gzip timestamp."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in [stage, *sorted(stage.rglob("*"))]:
            tar.add(path, arcname=str(path.relative_to(stage.parent)), recursive=False, filter=normalise)
    with packed.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
