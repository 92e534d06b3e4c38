"""Role model on the host: facts from recorded output, the transfer, record and pruning planned from them, and
whether the model fits the cluster's memory."""

from __future__ import annotations

import json

import pytest
from model_samples import CONTENT_SHA, gguf
from recordings import recorded_lines, words

from llamafleet import paths
from llamafleet.errors import OperationError
from llamafleet.operations import Change, Facts, NoChange, Shell, Transfer, Upload
from llamafleet.roles.model import facts as model_facts
from llamafleet.roles.model import fit, prune, role, source

pytestmark = pytest.mark.usefixtures("controller_cache")


def recorded(fact, name: str):
    """The value a host gave for `fact`, from a recording under tests/fixtures/recorded/model/."""
    return fact.process(recorded_lines(f"model/{name}"))


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


def test_free_bytes_and_memory_facts_parse_into_bytes():
    assert recorded(model_facts.FreeBytes("/x"), "freebytes.txt") == 82756829184
    assert recorded(model_facts.Memory(), "memory.txt") == {
        "total": 24683656 * 1024, "available": 23891696 * 1024, "held": 0
    }  # fmt: skip


def test_fact_commands_quote_paths():
    odd = "/srv/m; rm -rf x"
    assert f"p={odd}" in words(model_facts.ModelFile(odd, "/r", "/p").command())
    assert odd in words(model_facts.FreeBytes(odd).command())


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
