"""Role model: sources (file, URL, hf://) and downloads over loopback HTTP, facts from recorded output, plans."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from httpserve import Served, serving
from recordings import RECORDED, recorded_lines, words

from llamafleet import download, paths
from llamafleet.errors import OperationError, UsageError
from llamafleet.operations import Change, Facts, NoChange, Shell, Transfer, Upload
from llamafleet.roles.model import facts as model_facts
from llamafleet.roles.model import fit, prune, role, source

RECORDED_MODEL = RECORDED / "model"
HEADER = b"GGUF\x03\x00\x00\x00"
CONTENT = HEADER + bytes(range(256)) * 16  # what record.py wrote
CONTENT_SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return tmp_path / "cache"


def gguf(size: int = 3 << 20, seed: int = 1) -> bytes:
    body = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
    return HEADER + body


def recorded(fact, name: str):
    return fact.process(recorded_lines(RECORDED_MODEL / name))


# --------------------------------------------------------------------------- facts


def test_model_file_with_a_matching_record_is_not_hashed_again():
    state = recorded(model_facts.ModelFile("/m", "/r", "/p"), "modelfile_recorded.txt")
    assert state == model_facts.ModelFileState("a" * 64, True, 0o440, "root", "root", 0)


def test_model_file_with_a_stale_record_is_hashed():
    state = recorded(model_facts.ModelFile("/m", "/r", "/p"), "modelfile_stale_record.txt")
    assert (state.sha256, state.recorded, state.mode) == (CONTENT_SHA, False, 0o644)


def test_missing_model_file_reports_its_partial_transfer():
    state = recorded(model_facts.ModelFile("/m", "/r", "/p"), "modelfile_partial.txt")
    assert state == model_facts.ModelFileState(None, False, None, None, None, 1000)


def test_free_bytes_and_memory():
    assert recorded(model_facts.FreeBytes("/x"), "freebytes.txt") == 82756829184
    assert recorded(model_facts.Memory(), "memory.txt") == {
        "total": 24683656 * 1024, "available": 23891696 * 1024, "held": 0
    }  # fmt: skip


def test_fact_commands_quote_paths():
    odd = "/srv/m; rm -rf x"
    assert f"p={odd}" in words(model_facts.ModelFile(odd, "/r", "/p").command())
    assert odd in words(model_facts.FreeBytes(odd).command())


# --------------------------------------------------------------------------- sources


def test_a_local_model_is_checked_hashed_once_and_named_by_its_file(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(CONTENT)
    model = source.resolve(str(path), sha256=CONTENT_SHA.upper(), alias="team/m:1", progress=False)
    assert (model.name, model.size, model.sha256, model.alias) == ("m.gguf", len(CONTENT), CONTENT_SHA, "team/m:1")
    os.chmod(path, 0o400)  # the record is keyed by size, mtime, inode and ctime: a chmod moves ctime
    assert source.known_sha256(path) == CONTENT_SHA


def test_the_controller_hash_is_recorded_and_reused_until_the_file_changes(tmp_path, cache):
    path = tmp_path / "m.gguf"
    path.write_bytes(CONTENT)
    assert source.known_sha256(path) == CONTENT_SHA
    (record,) = (cache / "checksums").iterdir()
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


# --------------------------------------------------------------------------- plans


def make_model(tmp_path, names=("m.gguf",)):
    for index, name in enumerate(names):
        (tmp_path / name).write_bytes(gguf(1000, index))
    return source.resolve(str(tmp_path / names[0]), progress=False)


def plan_of(operation, values):
    return operation.plan(Facts({f.key: v for f, v in zip(operation.facts, values, strict=True)}))


def state(sha=None, partial=0, recorded=False, mode=0o440, group="llama"):
    if sha is None:
        return model_facts.ModelFileState(None, False, None, None, None, partial)
    return model_facts.ModelFileState(sha, recorded, mode, "root", group, partial)


def test_a_host_with_the_same_checksum_gets_nothing(tmp_path):
    model = make_model(tmp_path)
    result = plan_of(role.present(model, "llama"), [state(model.sha256, recorded=True), 10**12])
    assert result == NoChange(f"sha256 {model.sha256[:12]} matches (recorded)")


def test_a_missing_model_is_sent_resuming_what_arrived(tmp_path):
    model = make_model(tmp_path)
    result = plan_of(role.present(model, "llama"), [state(partial=600), 10**12])
    (step,) = result.steps
    assert isinstance(step, Transfer)
    assert (step.path, step.offset, step.size, step.sha256) == (
        f"{paths.MODELS_DIR}/m.gguf", 600, model.size, model.sha256
    )  # fmt: skip
    assert step.partial == f"{paths.INCOMING_DIR}/{model.sha256}.part"
    assert (step.mode, step.owner, step.group) == ("0440", "root", "llama")
    assert result.reason.endswith("1 resumed")


def test_a_partial_larger_than_the_model_is_sent_again_from_the_start(tmp_path):
    model = make_model(tmp_path)
    (step,) = plan_of(role.present(model, "llama"), [state(partial=model.size + 1), 10**12]).steps
    assert step.offset == 0


def test_free_disk_is_checked_before_sending(tmp_path):
    model = make_model(tmp_path)
    with pytest.raises(OperationError, match=r"needs 0\.00 GB more on /var/lib/llamafleet/models, only 0\.00 GB"):
        plan_of(role.present(model, "llama"), [state(), 1000])


def test_only_the_parts_that_differ_are_sent_and_modes_are_fixed(tmp_path):
    model = make_model(tmp_path, ("x-00001-of-00002.gguf", "x-00002-of-00002.gguf"))
    first, second = model.parts
    result = plan_of(role.present(model, "llama"), [state(first.sha256, mode=0o644), state("0" * 64), 10**12])
    shell, transfer = result.steps
    path = f"{paths.MODELS_DIR}/{first.name}"
    assert isinstance(shell, Shell) and words(shell.command) == [
        "chown",
        "root:llama",
        path,
        "&&",
        "chmod",
        "0440",
        path,
    ]
    assert isinstance(transfer, Transfer) and transfer.source == second.path


def test_the_deployed_record_changes_only_with_the_model_and_remembers_earlier_ones(tmp_path):
    model = make_model(tmp_path)
    op = role.deployed(model, "llama", notify=("restart llama-server",))
    old = json.dumps(
        {"name": "old.gguf", "sha256": "0" * 64, "size": 1, "parts": ["old.gguf"], "earlier": [["o.gguf"]]}
    )
    change = plan_of(op, [old])
    assert isinstance(change, Change) and change.reason == "was old.gguf"
    (upload,) = change.steps
    assert isinstance(upload, Upload) and (upload.path, upload.group) == (paths.DEPLOYED_MODEL, "llama")
    written = json.loads(upload.content)
    assert written["parts"] == ["m.gguf"] and written["earlier"] == [["old.gguf"], ["o.gguf"]]
    assert plan_of(op, [upload.content.decode()]) == NoChange("m.gguf is the deployed model")
    assert isinstance(plan_of(op, [None]), Change)


@pytest.mark.parametrize(
    ("keep", "removed"), [(1, ["a.gguf", "b.gguf"]), (2, ["b.gguf"]), (3, [])], ids=["keep1", "keep2", "keep3"]
)
def test_pruning_keeps_the_deployed_model_and_keep_models_minus_one_before_it(keep, removed):
    record = json.dumps({"name": "c.gguf", "parts": ["c.gguf"], "earlier": [["a.gguf"], ["b.gguf"]]})
    result = plan_of(prune.pruned(keep), [record, ["a.gguf", "b.gguf", "c.gguf"], []])
    if not removed:
        assert isinstance(result, NoChange)
        return
    (step,) = result.steps
    doomed = words(step.command)[3:]
    assert doomed == [f"{paths.MODELS_DIR}/{n}" for n in removed] + [f"{role.RECORDS_DIR}/{n}" for n in removed]


def test_pruning_removes_leftover_partials_and_never_runs_without_a_record():
    record = json.dumps({"name": "c.gguf", "parts": ["c.gguf"], "earlier": []})
    result = plan_of(prune.pruned(2), [record, ["c.gguf"], ["abc.part"]])
    assert words(result.steps[0].command)[3:] == [f"{paths.INCOMING_DIR}/abc.part"]
    assert plan_of(prune.pruned(2), [None, ["x.gguf"], []]) == NoChange("no model deployed")


# --------------------------------------------------------------------------- memory fit


def test_a_model_that_fits_passes_and_one_that_does_not_names_the_numbers():
    memory = recorded(model_facts.Memory(), "memory.txt")
    hosts = {"head": memory, "w1": memory, "w2": {**memory, "available": 0, "held": 4 << 30}}
    assert fit.shortfall(40 << 30, hosts) is None
    problem = fit.shortfall(60 << 30, hosts)
    assert "needs about 70.87 GB" in problem and "head 24.47, w1 24.47, w2 4.29" in problem
    assert "add workers" in problem and "tensor_split" in problem
