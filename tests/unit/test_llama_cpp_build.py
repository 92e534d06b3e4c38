"""The build is an operation planned from facts; a source the controller downloads is checked and cached."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
from recordings import RECORDED, recorded_lines

from llamafleet.errors import InventoryError, OperationError
from llamafleet.facts import FileContent, PathInfo
from llamafleet.operations.base import Change, Facts, NoChange
from llamafleet.roles.llama_cpp import buildscript, release, role, targets

WORK = "/var/lib/llamafleet/build/0123456789abcdef"
SCRIPT = "#!/usr/bin/env bash\necho build\n"
ARTIFACT = recorded_lines(RECORDED / "pathinfo_file.txt")  # a regular file and its sha256, as a host reports it
ARTIFACT_SHA = ARTIFACT[1].split()[0]


class FakeTarget:
    """Only what built() reads of a llama_cpp Target."""

    class settings:  # noqa: N801 - stands in for the settings object
        version = "b11434"

    class group:  # noqa: N801
        name = "debian-12-x86_64-cpu-native"


def plan_built(report: str | None, artifact: list[str], script: str = SCRIPT):
    operation = targets.built(FakeTarget, WORK, script)
    report_fact, artifact_fact = operation.facts
    assert report_fact.key == FileContent(f"{WORK}/built.env").key and isinstance(artifact_fact, PathInfo)
    values = {report_fact.key: report, artifact_fact.key: artifact_fact.process(artifact)}
    return operation.plan(Facts(values))


def report(script: str = SCRIPT, artifact_sha: str = ARTIFACT_SHA) -> str:
    script_sha = hashlib.sha256(script.encode()).hexdigest()
    return (
        f"LLAMAFLEET_BUILD_SECONDS=812\nLLAMAFLEET_SCRIPT_SHA256={script_sha}\n"
        f"LLAMAFLEET_ARTIFACT={WORK}/artifact.tar.gz {artifact_sha}\n"
    )


def test_no_report_means_build_here():
    change = plan_built(None, recorded_lines(RECORDED / "pathinfo_missing.txt"))
    assert isinstance(change, Change)
    assert [step.command for step in change.steps] == [f"bash {WORK}/build.sh"]
    assert "build here" in change.reason


def test_a_finished_build_of_the_same_script_is_found_again():
    found = plan_built(report(), ARTIFACT)
    assert isinstance(found, NoChange) and ARTIFACT_SHA[:12] in found.reason


@pytest.mark.parametrize(
    ("text", "artifact"),
    [
        (report(script="#!/usr/bin/env bash\necho older\n"), ARTIFACT),  # another build.sh made it
        (report(artifact_sha="0" * 64), ARTIFACT),  # the artifact changed since
        (report(), recorded_lines(RECORDED / "pathinfo_missing.txt")),  # the artifact is gone
        ("[ 97%] Linking CXX executable\n", ARTIFACT),  # a build cut short wrote no report
    ],
)
def test_anything_else_builds_again(text, artifact):
    assert isinstance(plan_built(text, artifact), Change)


def test_build_sh_reports_what_built_reads():
    # The names built() looks for are the ones build.sh writes (LLAMAFLEET_SCRIPT_SHA256, ARTIFACT).
    found = buildscript.parse_build_output(report().splitlines())
    assert found["script_sha256"] == hashlib.sha256(SCRIPT.encode()).hexdigest()
    assert found["artifact_sha256"] == ARTIFACT_SHA
    template = (role.ROLE.template_dir / "build.sh.j2").read_text()
    assert "LLAMAFLEET_SCRIPT_SHA256" in template and 'built.env"' in template


@pytest.fixture
def source_server(tmp_path):
    """A loopback HTTP server holding one archive; counts the requests it answers."""
    serve = tmp_path / "serve"
    serve.mkdir()
    (serve / "llama.cpp-b11434.tar.gz").write_bytes(b"not really a tarball, but bytes with a checksum\n" * 100)
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(serve)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", serve, hits
    finally:
        server.shutdown()
        server.server_close()


def test_controller_downloads_the_source_once_and_checks_it(source_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    base, serve, hits = source_server
    data = (serve / "llama.cpp-b11434.tar.gz").read_bytes()
    url = f"{base}/llama.cpp-b11434.tar.gz"
    first = release.download_checked(url, hashlib.sha256(data).hexdigest(), "head")
    second = release.download_checked(url, hashlib.sha256(data).hexdigest(), "w1")
    assert first == second and first.read_bytes() == data and first.name == "llama.cpp-b11434.tar.gz"
    assert len(hits) == 1  # every build host of the run shares one download
    assert (first.parent.stat().st_mode & 0o777) == 0o700


def test_a_source_with_another_checksum_is_refused(source_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    base, _, _ = source_server
    with pytest.raises(InventoryError, match="not the pinned one") as caught:
        release.download_checked(f"{base}/llama.cpp-b11434.tar.gz", "f" * 64, "w2")
    assert "llama_cpp_source_sha256" in str(caught.value) and "w2" in str(caught.value)


def test_a_failed_download_is_one_line_and_leaves_nothing(source_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    base, _, _ = source_server
    with pytest.raises(OperationError, match="download of .* failed"):
        release.download_checked(f"{base}/missing.tar.gz", "f" * 64, "head")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
