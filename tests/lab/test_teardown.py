"""invoke teardown: units and firewall rules go; with --purge nothing of llamafleet is left (runs last)."""

from __future__ import annotations

import pytest

from tests.lab.labtools import invoke_json, ssh

pytestmark = pytest.mark.last  # the session lab is torn down here: after every other lab test

HOSTS = ("head", "w1", "w2")
LEFT = (
    "for p in /opt/llama.cpp /var/lib/llamafleet /var/cache/llamafleet /etc/llamafleet "
    "/etc/systemd/system/llama-rpc.service /etc/systemd/system/llama-server.service; do [ -e $p ] && echo $p; done; "
    "getent passwd llama; ls /etc/systemd/system/*/llama-* 2>/dev/null; "
    "pgrep -a 'llama-server|rpc-server'; true"
)
RULES = (
    "{ nft list ruleset 2>/dev/null; ufw status 2>/dev/null; "
    "firewall-cmd --list-all-zones 2>/dev/null; firewall-cmd --permanent --list-all-zones 2>/dev/null; } "
    "| grep -i -n -e llamafleet -e 50052 -e 8080; true"
)


def changed(doc: dict) -> dict:
    return {h: c.get("changed", 0) for h, c in doc["recap"].items()}


def test_teardown_removes_services_and_rules_then_purge_removes_everything(lab, env):
    code, doc = invoke_json("teardown", lab.inventory, env)
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    for host in HOSTS:
        units = ssh(lab, host, "systemctl show -p LoadState --value llama-rpc.service llama-server.service")
        assert units.stdout.split() == ["not-found", "not-found"], (host, units.stdout)
        assert ssh(lab, host, RULES).stdout == "", (host, "llamafleet firewall rules left")
        assert ssh(lab, host, "test -d /opt/llama.cpp/current/bin").returncode == 0, "without --purge releases stay"
        assert ssh(lab, host, "ss -Htln | grep -c -e ':22 '").stdout.strip() != "0", "sshd still listens"
    code, doc = invoke_json("teardown", lab.inventory, env)
    assert code == 0 and set(changed(doc).values()) == {0}, changed(doc)

    code, doc = invoke_json("teardown", lab.inventory, env, "--purge")
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    for host in HOSTS:
        assert ssh(lab, host, LEFT).stdout == "", (host, "left after --purge")
        assert ssh(lab, host, RULES).stdout == "", host
    code, doc = invoke_json("teardown", lab.inventory, env, "--purge")
    assert code == 0 and set(changed(doc).values()) == {0}, changed(doc)
