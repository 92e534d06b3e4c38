"""Lab tier: a head and a worker with api_tls: true: the API answers a completion over HTTPS verified with
llamafleet's CA, plain HTTP does not answer, the head's key never reaches the controller, a second provision and
deploy change nothing, verify passes."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from llamafleet import lab as lab_api
from llamafleet import tls
from scripts import make_gguf
from tests.lab.conftest import SESSION_LAB
from tests.lab.labtools import invoke_json, source_vars, ssh

pytestmark = pytest.mark.lab

TLS_LAB = f"{SESSION_LAB[:7]}tls"  # beside the session's lab, named after it (two checkouts never share one)


@pytest.fixture(scope="module")
def tls_lab():
    """head and w1; removed at the end of the module."""
    try:
        yield lab_api.up(TLS_LAB, workers=1)
    finally:
        lab_api.down(TLS_LAB)


def cli(task: str, lab, env, source: str, *extra: str) -> dict:
    code, doc = invoke_json(task, lab.inventory, env, *source_vars(source), "-e", "api_tls=true", *extra)
    bad = [f"{r['host']}: {r['role']}: {r['operation']}: {r['reason']}" for r in doc.get("results", [])
           if r["status"] in ("failed", "unreachable")]  # fmt: skip
    assert code == 0, bad or doc.get("messages")
    return doc


def changed(doc: dict) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in doc["recap"].items() if counts.get("changed")}


@pytest.fixture(scope="module")
def served(tls_lab, env, source, tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("tls-model") / "tls.gguf"
    make_gguf.make_model(model, size="1M", seed=3)
    cli("provision", tls_lab, env, source)
    cli("deploy", tls_lab, env, source, "--model", str(model))
    return model


def test_a_completion_works_over_https_verified_with_the_inventory_s_ca(tls_lab, served):
    ca_file, ca_key = tls.ca_paths(Path(tls_lab.inventory))
    assert (ca_key.stat().st_mode & 0o777) == 0o600
    key = Path(tls_lab.inventory).with_suffix(".api-key").read_text().split()[0]
    head = tls_lab.host("head").address
    answer = requests.post(
        f"https://{head}:8080/completion",
        json={"prompt": "hello", "n_predict": 4, "ignore_eos": True},
        headers={"Authorization": f"Bearer {key}"},
        verify=str(ca_file),
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["tokens_predicted"] == 4
    with pytest.raises(requests.exceptions.SSLError):  # trusted by that CA only
        requests.get(f"https://{head}:8080/health", timeout=10)


def test_plain_http_does_not_answer(tls_lab, served):
    head = tls_lab.host("head").address
    with socket.create_connection((head, 8080), timeout=10) as conn:
        conn.settimeout(10)
        conn.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        try:
            answer = conn.recv(64)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer


def test_the_head_s_key_is_made_there_and_never_reaches_the_controller(tls_lab, served):
    shown = ssh(tls_lab, "head", f"stat -c '%a %U' {tls.KEY_FILE} && openssl pkey -in {tls.KEY_FILE} -pubout")
    assert shown.returncode == 0 and shown.stdout.startswith("600 root"), shown.stderr
    private = ssh(tls_lab, "head", f"openssl pkey -in {tls.KEY_FILE}").stdout.strip()
    body = "".join(private.splitlines()[1:-1])
    folder = Path(tls_lab.inventory).parent
    found = subprocess.run(["grep", "-rlF", body[:60], str(folder)], capture_output=True, text=True)
    assert found.stdout == "", found.stdout
    cache = os.environ.get("LLAMAFLEET_TEST_CACHE")
    if cache:
        found = subprocess.run(["grep", "-rlF", body[:60], cache], capture_output=True, text=True)
        assert found.stdout == "", found.stdout


def test_a_second_provision_and_deploy_change_nothing(tls_lab, env, source, served):
    assert changed(cli("provision", tls_lab, env, source)) == {}
    assert changed(cli("deploy", tls_lab, env, source, "--model", str(served))) == {}


def test_verify_passes(tls_lab, env, source, served):
    code, doc = invoke_json("verify", tls_lab.inventory, env, *source_vars(source), "-e", "api_tls=true")
    head = {check["test"].split("[")[0]: check["status"] for check in doc["hosts"]["head"]}
    tls_checks = ("test_api_certificate_from_the_ca", "test_plain_http_not_served", "test_completion_token_count")
    assert {name: head.get(name) for name in tls_checks} == dict.fromkeys(tls_checks, "passed"), head
    failed = [
        r for r in doc.get("results", doc.get("hosts", [])) if isinstance(r, dict) and r.get("outcome") == "failed"
    ]
    assert code == 0, failed or doc
