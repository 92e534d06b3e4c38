"""The sums record install.sh writes: the identity fact reads it while no file changed, and hashes again after."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from llama_cpp_samples import make_source_archive, needs_gnu_tools, run_build, stage_and_switch

from llamafleet.facts import CommandOutput
from llamafleet.roles.llama_cpp import buildscript, hostfacts, identity, sums


def measured(command: CommandOutput, root: Path) -> dict[str, str]:
    """The files' sha256 as the fact `command` reports them for the release installed under `root`."""
    script = command.command().replace(hostfacts.CURRENT, str(root / "current"))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    return identity.with_measured_files({}, result.stdout.partition("@@files")[2])["measured"]


@needs_gnu_tools
def test_installed_sums_serve_the_identity_fact_until_a_file_changes(tmp_path):
    archive, sha = make_source_archive(tmp_path)
    result, _ = run_build(tmp_path, archive, sha)
    facts = buildscript.parse_build_output(result.stdout.splitlines())
    stage_and_switch(tmp_path, facts)
    root = tmp_path / "opt"
    manifest = json.loads((root / "current" / "BUILD.json").read_text())
    record = root / "current" / sums.SUMS_RECORD
    assert record.is_file(), "install records the files' stat and sha256"
    assert measured(hostfacts.IDENTITY, root) == measured(hostfacts.IDENTITY_MEASURED, root) == manifest["files"]
    record.write_text(record.read_text().replace(manifest["files"]["bin/llama-server"], "0" * 64))
    assert measured(hostfacts.IDENTITY, root)["bin/llama-server"] == "0" * 64, "the record is used while stats hold"
    server = root / "current" / "bin" / "llama-server"
    stat = server.stat()
    server.write_bytes(server.read_bytes() + b"!")  # rewritten in place, mtime put back: ctime still moves
    os.utime(server, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    found = measured(hostfacts.IDENTITY, root)
    assert found["bin/llama-server"] == hashlib.sha256(server.read_bytes()).hexdigest(), "hashed again"
    assert sums.SUMS_RECORD not in " ".join(found), "the record is not a file of the release"
