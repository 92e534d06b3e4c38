"""invoke verify on the session lab: every check passes on the served cluster, each injected fault fails exactly
its checks, and provision or deploy repairs it (real lab hosts; runs after test_serving, on the same lab)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.lab.labtools import invoke_json, source_vars, ssh
from tests.lab.test_serving import model  # noqa: F401 - the same generated model, as a fixture of this module

WORKER_CHECKS = (
    "test_firewall_rules",
    "test_rpc_cache_seeded",
    "test_listening_address",
    "test_pinned_release_current",
    "test_rpc_cache_within_limit",
    "test_rpc_closed_to_others",
    "test_rpc_in_use_by_head",
    "test_rpc_protocol_as_head",
    "test_rpc_reachable_from_head",
    "test_service_hardening",
    "test_service_running",
)
HEAD_CHECKS = (
    "test_api_key_file",
    "test_api_key_required",
    "test_completion_token_count",
    "test_firewall_rules",
    "test_health",
    "test_key_not_in_arguments",
    "test_listening_address",
    "test_metrics",
    "test_model_checksum",
    "test_model_on_every_worker",
    "test_models_lists_alias",
    "test_pinned_release_current",
    "test_service_hardening",
    "test_service_running",
)
EVERY_CHECK = {
    *(f"{t}[head]" for t in HEAD_CHECKS),
    *(f"{t}[{w}]" for t in WORKER_CHECKS for w in ("w1", "w2")),
    "test_builds_identical[cluster]",
}
# Seeding is on for verify's deploys, so every check of such a cluster runs; only those of balancers, api_tls and
# cluster_tunnel are skipped.
SKIPPED: set[str] = {
    "test_api_closed_to_all_but_the_balancers[head]",
    "test_api_certificate_from_the_ca[head]",
    "test_plain_http_not_served[head]",
    *(f"test_tunnel_handshakes_recent[{host}]" for host in ("head", "w1", "w2")),
    *(f"test_rpc_closed_on_the_underlay[{host}]" for host in ("w1", "w2")),
}
MODEL = "/var/lib/llamafleet/models/tiny-test.gguf"


def failures(doc: dict) -> list[tuple[str, str, str]]:
    """Each failed check with what it found."""
    return [
        (host, c["test"], c["found"])
        for host, checks in doc["hosts"].items()
        for c in checks
        if c["status"] == "failed"
    ]


def ids(doc: dict, status: str) -> set[str]:
    return {f"{c['test']}[{host}]" for host, checks in doc["hosts"].items() for c in checks if c["status"] == status}


@pytest.fixture(scope="module")
def cluster_vars(source) -> list[str]:
    return [*source_vars(source), "-e", "rpc_cache_seed=true"]


@pytest.fixture(scope="module")
def serving(lab, env, model, cluster_vars):  # noqa: F811 - `model` is the fixture imported above
    """The cluster served (provision and deploy change nothing when test_serving brought it up already)."""
    for task, extra in (("provision", ()), ("deploy", ("--model", str(model)))):
        code, doc = invoke_json(task, lab.inventory, env, *extra, *cluster_vars)
        assert code == 0, [r for r in doc["results"] if r["status"] in ("failed", "unreachable")] or doc["messages"]
    return model


def verify(lab, env, cluster_vars, *extra: str, inventory: str | None = None) -> tuple[int, dict]:
    return invoke_json("verify", inventory or lab.inventory, env, *extra, *cluster_vars)


def key_of(lab) -> str:
    return Path(lab.inventory).with_suffix(".api-key").read_text().splitlines()[0]


def test_verify_runs_every_check_and_passes(serving, lab, env, cluster_vars, tmp_path):
    junit, html = tmp_path / "verify.xml", tmp_path / "verify.html"
    code, doc = verify(lab, env, cluster_vars, "--junit-xml", str(junit), "--html", str(html))
    assert code == 0, [c for checks in doc["hosts"].values() for c in checks if c["status"] == "failed"]
    assert ids(doc, "passed") == EVERY_CHECK
    assert ids(doc, "skipped") == SKIPPED
    assert doc["ssh_commands"] == {"head": 1, "w1": 1, "w2": 1}, "one batched command per host"
    cases = ET.parse(junit).getroot().iter("testcase")
    hosts = {p.get("value") for case in cases for p in case.iter("property") if p.get("name") == "host"}
    assert hosts == {"head", "w1", "w2", "cluster"}
    key = key_of(lab)
    assert key not in junit.read_text() and key not in html.read_text() and key not in str(doc)
    assert "<html" in html.read_text()[:200].lower()


def wait_for_head_state(lab, wanted: str, seconds: int = 60) -> None:
    for _ in range(seconds):
        state = ssh(lab, "head", "systemctl show -p SubState --value llama-server").stdout.strip()
        if state == wanted:
            return
        time.sleep(1)
    pytest.fail(f"llama-server on head not {wanted} after {seconds} s (last: {state})")


FAULTS = {
    # name: (shell on a host, the checks that must fail, and only they; the repair)
    "stop_worker": (
        None,
        {
            "test_service_running[w1]",
            "test_listening_address[w1]",
            "test_rpc_in_use_by_head[w1]",
            "test_rpc_reachable_from_head[w1]",
            "test_rpc_protocol_as_head[w1]",  # a stopped rpc-server announces nothing
            "test_rpc_in_use_by_head[w2]",
            *(
                f"{t}[head]"
                for t in (
                    "test_service_running",
                    "test_listening_address",
                    "test_health",
                    "test_models_lists_alias",
                    "test_completion_token_count",
                    "test_api_key_required",
                    "test_metrics",
                    "test_model_on_every_worker",
                )
            ),
        },
        ("provision", "deploy"),
    ),
    "open_rpc_port": (
        ("w2", "nft insert rule inet llamafleet input tcp dport 50052 accept"),
        {"test_firewall_rules[w2]", "test_rpc_closed_to_others[w2]"},
        ("provision",),
    ),
    "corrupt_model": (
        ("head", f"printf Z | dd of={MODEL} bs=1 seek=4096 conv=notrunc status=none"),
        {"test_model_checksum[head]"},
        ("deploy",),
    ),
    "edit_api_key": (
        ("head", "echo lf-edited-by-hand > /etc/llamafleet/api-key"),
        {"test_api_key_file[head]"},
        ("provision",),
    ),
    "swap_worker_binary": (
        ("w1", "b=/opt/llama.cpp/current/bin; cp $b/llama-bench $b/.swap && mv $b/.swap $b/ggml-rpc-server"),
        {"test_pinned_release_current[w1]", "test_builds_identical[cluster]"},
        ("provision",),
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_caught_then_repaired(fault, serving, lab, env, cluster_vars):
    inject, expected, repairs = FAULTS[fault]
    if inject is None:  # w1's rpc-server stopped: the head aborts on its next request (verify's completion)
        assert ssh(lab, "w1", "systemctl stop llama-rpc").returncode == 0
        verify(lab, env, cluster_vars)
        wait_for_head_state(lab, "start-pre")  # then waits for w1 before starting again: a settled state
    else:
        done = ssh(lab, *inject)
        assert done.returncode == 0, done.stderr
    code, doc = verify(lab, env, cluster_vars)
    assert code == 1
    assert ids(doc, "failed") == expected, [c for cs in doc["hosts"].values() for c in cs if c["status"] == "failed"]
    for checks in doc["hosts"].values():
        for check in checks:
            if check["status"] == "failed":  # host, check, expected, found and where to look, in every message
                assert check["check"] and check["expected"] and check["found"] and check["look"], check
    if fault == "swap_worker_binary":  # deploy refuses mixed builds too (exit 4), provision converges them
        code, refused = invoke_json("deploy", lab.inventory, env, "--model", str(serving), *cluster_vars)
        assert code == 4 and any("bin/ggml-rpc-server" in m for m in refused["messages"]), refused["messages"]
    for task in repairs:
        extra = ("--model", str(serving)) if task == "deploy" else ()
        code, repaired = invoke_json(task, lab.inventory, env, *extra, *cluster_vars)
        assert code == 0, [r for r in repaired["results"] if r["status"] == "failed"] or repaired["messages"]
        if fault == "swap_worker_binary":
            reasons = [r["reason"] for r in repaired["results"] if r["status"] == "changed" and r["host"] == "w1"]
            assert any("bin/ggml-rpc-server" in reason for reason in reasons), reasons
    code, doc = verify(lab, env, cluster_vars)
    assert code == 0, (
        ids(doc, "failed"),
        failures(doc),
        [(r["host"], r["operation"], r["reason"]) for r in repaired["results"] if r["status"] == "changed"],
    )
    assert ids(doc, "passed") == EVERY_CHECK


def test_verify_as_a_sudo_user_gives_the_same_verdict(serving, lab, env, cluster_vars, admin_inventory):
    """A non-root login with sudo that asks a password on the workers: the same checks, the same verdict."""
    code, doc = verify(lab, env, cluster_vars, inventory=admin_inventory)
    assert code == 0, ids(doc, "failed")
    assert ids(doc, "passed") == EVERY_CHECK


def test_unreachable_hosts_fail_fast_with_one_message_each(lab, env, cluster_vars, tmp_path):
    data = yaml.safe_load(Path(lab.inventory).read_text())
    closed = {"ansible_port": 9, "ssh_connect_timeout": 3}  # refused, or dropped by w1's ufw for 3 s
    data["all"]["vars"].update(closed, api_key_file=str(Path(lab.inventory).with_suffix(".api-key")))
    inventory = tmp_path / "closed.yml"
    inventory.write_text(yaml.safe_dump(data))
    started = time.monotonic()
    code, doc = verify(lab, env, cluster_vars, inventory=str(inventory))
    assert code == 3
    assert set(doc["unreachable"]) == {"head", "w1", "w2"}
    for host, message in doc["unreachable"].items():
        assert message.startswith(f"{host}: cannot connect to ") and "\n" not in message, message
    print(f"verify against 3 unreachable hosts: {time.monotonic() - started:.1f} s")
