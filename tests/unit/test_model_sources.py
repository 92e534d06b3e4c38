"""Role model on the controller: file, URL and hf:// sources checked and hashed once; downloads over loopback
HTTP into the cache, resumed after a cut."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from httpserve import Served, serving
from model_samples import CONTENT, CONTENT_SHA, gguf

from llamafleet import download
from llamafleet.errors import OperationError, UsageError
from llamafleet.roles.model import source

pytestmark = pytest.mark.usefixtures("controller_cache")


def test_a_local_model_is_checked_hashed_once_and_named_by_its_file(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(CONTENT)
    model = source.resolve(str(path), sha256=CONTENT_SHA.upper(), alias="team/m:1", progress=False)
    assert (model.name, model.size, model.sha256, model.alias) == ("m.gguf", len(CONTENT), CONTENT_SHA, "team/m:1")
    os.chmod(path, 0o400)  # the record is keyed by size, mtime, inode and ctime: a chmod moves ctime
    assert source.known_sha256(path) == CONTENT_SHA


def test_the_controller_hash_is_recorded_and_reused_until_the_file_changes(tmp_path, controller_cache):
    path = tmp_path / "m.gguf"
    path.write_bytes(CONTENT)
    assert source.known_sha256(path) == CONTENT_SHA
    (record,) = (controller_cache / "checksums").iterdir()
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({**saved, "sha256": "f" * 64}))  # what a second run trusts without reading
    assert source.known_sha256(path) == "f" * 64
    path.write_bytes(CONTENT + b"more")
    assert source.known_sha256(path) == hashlib.sha256(CONTENT + b"more").hexdigest()


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"PK\x03\x04 a zip", "m.gguf", "is not a GGUF file"),
        (b"GGUF\x09\x00\x00\x00", "m.gguf", "is not a GGUF file"),
        (b"GGU", "m.gguf", "is not a GGUF file"),
        (CONTENT, "m.bin", "must end in .gguf"),
        (CONTENT, "-m.gguf", "must end in .gguf"),
    ],
)
def test_what_is_not_gguf_is_refused_before_anything_is_sent(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        source.resolve(str(path), progress=False)


def test_a_wrong_sha256_or_alias_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(CONTENT)
    with pytest.raises(UsageError, match=f"has sha256 {CONTENT_SHA}, not the --sha256 given"):
        source.resolve(str(path), sha256="0" * 64, progress=False)
    with pytest.raises(UsageError, match="64 hexadecimal digits"):
        source.resolve(str(path), sha256="abc", progress=False)
    with pytest.raises(UsageError, match="--alias"):
        source.resolve(str(path), alias="a b; rm", progress=False)
    with pytest.raises(UsageError, match="use a file, an http"):
        source.resolve("ftp://x/m.gguf", progress=False)


def test_a_split_model_is_one_model_of_every_part(tmp_path):
    for index in (1, 2, 3):
        (tmp_path / f"big-{index:05d}-of-00003.gguf").write_bytes(gguf(1000, index))
    model = source.resolve(str(tmp_path / "big-00001-of-00003.gguf"), progress=False)
    assert [p.name for p in model.parts] == [f"big-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    assert model.name == "big-00001-of-00003.gguf" and model.size == 3 * len(gguf(1000))
    with pytest.raises(UsageError, match="part 2 of 3: name the first part"):
        source.resolve(str(tmp_path / "big-00002-of-00003.gguf"), progress=False)
    (tmp_path / "big-00003-of-00003.gguf").unlink()
    with pytest.raises(UsageError, match="no such file: .*big-00003-of-00003.gguf"):
        source.resolve(str(tmp_path / "big-00001-of-00003.gguf"), progress=False)


def test_hf_sources_name_the_hubs_download_url_and_carry_the_token_as_a_header(monkeypatch):
    url, headers = source.hub_url("hf://org/repo/sub/m-Q4_K_M.gguf")
    assert url == "https://huggingface.co/org/repo/resolve/main/sub/m-Q4_K_M.gguf" and headers == {}
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert source.hub_url("hf://org/repo/m.gguf")[1] == {"Authorization": "Bearer hf_secret"}
    for bad in ("hf://org", "hf://org/repo", "hf://org/../m.gguf", "hf://org/repo/../../etc/m.gguf"):
        with pytest.raises(UsageError, match="hf://"):
            source.hub_url(bad)


# --------------------------------------------------------------------------- downloads


def test_a_url_is_downloaded_once_into_the_cache_then_reused():
    data = gguf()
    with serving(Served({"/m/model.gguf": data})) as served:
        model = source.resolve(f"{served.url}/m/model.gguf", progress=False)
        again = source.resolve(f"{served.url}/m/model.gguf", progress=False)
    assert model.sha256 == again.sha256 == hashlib.sha256(data).hexdigest()
    assert model.parts[0].path.read_bytes() == data
    assert len(served.requests) == 1, "the second run uses the cache"


@pytest.mark.parametrize("ranges", [True, False], ids=["server-with-range", "server-without-range"])
def test_an_interrupted_download_resumes(ranges):
    data = gguf()
    with serving(Served({"/model.gguf": data}, ranges=ranges, cut_after=1 << 20)) as served:
        with pytest.raises(OperationError, match="download of .* failed: .*run again to resume it"):
            source.resolve(f"{served.url}/model.gguf", progress=False)
        target = download.slot(f"{served.url}/model.gguf") / "model.gguf"
        partial = target.with_name("model.gguf.part")
        assert partial.stat().st_size == 1 << 20 and not target.exists()
        model = source.resolve(f"{served.url}/model.gguf", progress=False)
    assert model.parts[0].path.read_bytes() == data and model.sha256 == hashlib.sha256(data).hexdigest()
    assert served.requests[1][1].get("Range") == f"bytes={1 << 20}-"
    assert not partial.exists()


def test_a_complete_partial_download_is_finished_with_a_416():
    data = gguf(1 << 16)
    with serving(Served({"/model.gguf": data})) as served:
        target = download.slot(f"{served.url}/model.gguf") / "model.gguf"
        target.with_name("model.gguf.part").write_bytes(data)
        model = source.resolve(f"{served.url}/model.gguf", progress=False)
    assert model.sha256 == hashlib.sha256(data).hexdigest()


def test_a_url_that_is_not_gguf_is_refused_after_its_first_bytes_and_leaves_nothing():
    with serving(Served({"/page.gguf": b"<html>" + b"x" * (3 << 20)})) as served:
        with pytest.raises(UsageError, match="is not a GGUF file"):
            source.resolve(f"{served.url}/page.gguf", progress=False)
        folder = download.slot(f"{served.url}/page.gguf")
    assert list(folder.iterdir()) == []


def test_a_split_model_url_fetches_every_part():
    parts = {f"/d/s-{i:05d}-of-00002.gguf": gguf(1000, i) for i in (1, 2)}
    with serving(Served(parts)) as served:
        model = source.resolve(f"{served.url}/d/s-00001-of-00002.gguf", progress=False)
    assert [p.path.read_bytes() for p in model.parts] == list(parts.values())


def test_hf_downloads_send_the_token_and_never_show_it(monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_print")
    with serving(Served({"/org/repo/resolve/main/m.gguf": gguf()})) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        source.resolve("hf://org/repo/m.gguf", progress=True)
        with pytest.raises(OperationError, match="HTTP 404") as failed:
            source.resolve("hf://org/repo/missing.gguf", progress=True)
    assert served.requests[0][1]["Authorization"] == "Bearer hf_do_not_print"
    shown = capsys.readouterr()
    assert "hf_do_not_print" not in shown.out + shown.err + str(failed.value)
    assert "m.gguf:" in shown.err, "progress is shown"


def test_a_cached_download_changed_since_is_refused():
    with serving(Served({"/model.gguf": gguf()})) as served:
        model = source.resolve(f"{served.url}/model.gguf", progress=False)
        model.parts[0].path.write_bytes(gguf(seed=9))
        with pytest.raises(OperationError, match="changed since it was fetched"):
            source.resolve(f"{served.url}/model.gguf", progress=False)


def test_progress_lines_are_timestamped_when_not_a_terminal(capsys):
    meter = download.Progress("m.gguf", 2_000_000)
    meter.update(1_000_000)
    meter.finish()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.split(" ", 1)[1].startswith("m.gguf: 1.0 MB of 2.0 MB (50%)"), line
    assert line[2] == ":" and line[5] == ":", "HH:MM:SS first"
