"""The head serves the deployed model across every worker, with the API key enforced and kept secret."""

from __future__ import annotations

import json

import pytest

from llamafleet import paths
from llamafleet.verify.expected import Journal
from llamafleet.verify.plugin import reach_from, require
from llamafleet.verify.probes import COMPLETION_TOKENS

testinfra_hosts = ["head"]


def _answer(observed, name: str):
    return observed.facts["api"].get(name)


def _shown(answer) -> str:
    if answer is None:
        return "not asked"
    return f"HTTP {answer.status or 'no answer'} {' '.join(answer.body.split())[:160]}".strip()


def _json(answer) -> dict:
    try:
        return json.loads(answer.body) if answer is not None else {}
    except ValueError:
        return {}


def test_health(node, observed, record_property):
    """The head answers /health with 200 (verify waits while the model loads)."""
    health, waited = _answer(observed, "health"), observed.facts["api"].get("waited", 0)
    record_property("waited_seconds", waited)  # the one retry: the head may still be loading its model
    found = _shown(health) + (f" after waiting {waited} s for the model to load" if waited else "")
    require(
        health is not None and health.status == 200,
        node.name,
        "/health",
        "HTTP 200",
        found,
        Journal(node.name, paths.SERVER_UNIT),
    )


def test_models_lists_alias(node, observed, expect):
    """/v1/models lists the deployed model under its alias."""
    alias = expect.model_alias(node, observed.facts["model"])
    answer = _answer(observed, "models")
    names = [m.get("id") for m in _json(answer).get("data", []) if isinstance(m, dict)]
    require(
        alias is not None and alias in names,
        node.name,
        "/v1/models lists the model",
        alias or "a deployed model",
        ", ".join(map(str, names)) or _shown(answer),
        f"{paths.DEPLOYED_MODEL}; model_alias",
    )


def test_completion_token_count(node, observed):
    """A completion of 8 tokens returns 8 tokens."""
    answer = _answer(observed, "completion")
    got = _json(answer).get("tokens_predicted")
    require(
        answer is not None and answer.status == 200 and got == COMPLETION_TOKENS,
        node.name,
        f"a completion of {COMPLETION_TOKENS} tokens",
        f"HTTP 200 with {COMPLETION_TOKENS} tokens",
        f"{got} tokens, {_shown(answer)}",
        Journal(node.name, paths.SERVER_UNIT),
    )


def test_api_key_required(node, observed):
    """The API refuses a request without the key and answers one with it."""
    without, with_key = _answer(observed, "models_without_key"), _answer(observed, "models")
    statuses = (getattr(without, "status", None), getattr(with_key, "status", None))
    require(
        statuses == (401, 200),
        node.name,
        "the API key is enforced",
        "/v1/models: 401 without the key, 200 with it",
        f"{statuses[0]} without, {statuses[1]} with",
        f"{paths.API_KEY_FILE}; api_key_file",
    )


def test_metrics(node, observed, expect):
    """/metrics with the key answers Prometheus text."""
    if not expect.head_settings(node).metrics:
        pytest.skip("metrics: false in the inventory")
    answer = _answer(observed, "metrics")
    ok = answer is not None and answer.status == 200 and "llamacpp:" in answer.body
    require(
        ok,
        node.name,
        "/metrics with the key",
        "HTTP 200, Prometheus text with llamacpp: series",
        _shown(answer),
        "metrics",
    )


def test_model_on_every_worker(node, observed, expect):
    """Every worker holds part of the model (llama-server's load log)."""
    held = observed.facts["load_log"]
    wanted = [w.endpoint for w in expect.view(node).workers]
    missing = [e for e in wanted if held.get(e, 0) <= 0]
    found = ", ".join(f"{e} {mib:.2f} MiB" for e, mib in held.items()) or "no RPC model buffer in the load log"
    require(
        not missing,
        node.name,
        "every worker holds part of the model",
        "a model buffer on " + ", ".join(wanted),
        found,
        f"journalctl -u {paths.SERVER_UNIT} | grep 'model buffer size' on {node.name}; tensor_split",
    )


def test_model_checksum(node, observed):
    """The model file on the head has the sha256 deploy recorded."""
    record = observed.facts["model"] or {}
    wanted, measured = record.get("sha256"), record.get("measured")
    require(
        wanted and measured == wanted,
        node.name,
        "model file matches the deployed checksum",
        f"sha256 {wanted or '(no model deployed)'} of {record.get('name', '?')}",
        f"sha256 {measured or 'none (file missing)'}",
        f"{paths.DEPLOYED_MODEL}; `invoke deploy` copies it again",
    )


def test_api_key_file(node, observed, expect):
    """The head's API key file is root's alone and holds the controller's key."""
    state = observed.facts["key_file"]
    found = "missing" if state is None else f"{state.owner}:{state.group} {state.mode:04o}"
    same = state is not None and state.sha256 == expect.key_sha256(node)
    if state is not None and not same:
        found += ", content differs from the controller's key file"
    ok = state is not None and (state.owner, state.group, state.mode) == ("root", "root", 0o600) and same
    require(
        ok,
        node.name,
        "API key file private and current",
        f"{paths.API_KEY_FILE} root:root 0600 holding the key of {expect.key_file(node)}",
        found,
        "`invoke provision` writes it again",
    )


def test_key_not_in_arguments(node, observed):
    """No process on the head has the API key on its command line."""
    holders = observed.facts["key_in_arguments"]
    require(
        not holders,
        node.name,
        "API key on no command line",
        "no process",
        "; ".join(holders),
        "ps -eo pid,args; llama_server_extra_args",
    )


def test_api_closed_to_all_but_the_balancers(node, suite, expect):
    """With balancers, the head's API is closed to other hosts (its first worker tries)."""
    view = expect.view(node)
    prober = expect.api_prober(view)
    if prober is None:
        pytest.skip("no balancers (or no worker to probe from): the API admits api_allow")
    endpoint = expect.head_api_outside(view)
    state = reach_from(suite, prober, endpoint)
    require(
        state == "closed",
        node.name,
        "the API closed to all but the balancers",
        f"{prober} cannot connect to {endpoint}",
        f"{prober} could: {state}" if state else "not probed",
        "`invoke provision` rewrites the firewall and IPAddressAllow= of llama-server",
    )
