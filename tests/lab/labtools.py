"""What lab tests share: the llama.cpp version, and the CLI run as a user runs it (JSON out, never a traceback)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamafleet.lab.inventory import ssh_argv
from tests.command_line import invoke

VERSION = "b11434"


def invoke_json(task: str, inventory: str, env: dict[str, str], *extra: str) -> tuple[int, dict]:
    """Run `invoke TASK -i INVENTORY --json ...`; (exit status, the JSON document). Never a traceback."""
    result = invoke(task, "-i", inventory, "--json", *extra, env=env, timeout=3000)
    assert "Traceback" not in result.stderr, result.stderr
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"not JSON (exit {result.returncode}): {result.stdout[-2000:]} {result.stderr[-2000:]}")


def source_vars(source: str) -> list[str]:
    return ["-e", f"llama_cpp_version={VERSION}", "-e", f"llama_cpp_source_archive={source}"]


def ssh(lab, host: str, command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """A command on a lab host as root (lab key, pinned host key)."""
    argv = ssh_argv(lab, lab.host(host)) + [command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def release_tarball(env: dict[str, str], folder: Path, broken: bool = False) -> Path:
    """An upstream-style release tarball made from the lab's own build (no second build needed).

    `broken`: its llama-server exits 1 at once (a release that installs fine and then cannot serve).
    """
    artifact = lab_build_artifact(Path(env["LLAMAFLEET_CACHE"]))
    unpacked = folder / "unpacked"
    with tarfile.open(artifact) as tar:
        tar.extractall(unpacked, filter="data")
    bin_dir = next(unpacked.glob("*/bin"))
    if broken:
        server = bin_dir / "llama-server"
        server.unlink()
        server.write_text("#!/bin/sh\necho 'llama-server: this release is broken on purpose' >&2\nexit 1\n")
        server.chmod(0o755)
    serve = folder / "serve"
    serve.mkdir()
    with tarfile.open(serve / f"llama-{VERSION}-bin-ubuntu-x64.tar.gz", "w:gz") as tar:
        tar.add(bin_dir, arcname=f"llama-{VERSION}")
    return serve


def lab_build_artifact(cache: Path) -> Path:
    """The cached artifact of the lab's own build of VERSION (a reused cache also holds releases, other builds)."""
    for artifact in sorted((cache / "artifacts").glob("*/artifact.tar.gz")):
        with tarfile.open(artifact) as tar:
            member = next((m for m in tar if m.name.endswith("/BUILD.json") and m.name.count("/") == 1), None)
            manifest = json.loads(tar.extractfile(member).read()) if member else {}
        if manifest.get("install") == "build" and manifest.get("version") == VERSION:
            return artifact
    raise AssertionError(f"no artifact of the lab's build of {VERSION} in {cache}")


@contextlib.contextmanager
def served_folder(folder: Path) -> Iterator[str]:
    """A loopback HTTP server for `folder` (the release download URL), stopped afterwards."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def release_vars(url: str) -> list[str]:
    return [
        "-e",
        f"llama_cpp_version={VERSION}",
        "-e",
        "llama_cpp_install=release",
        "-e",
        f"llama_cpp_release_url={url}",
    ]
