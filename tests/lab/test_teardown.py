"""invoke teardown: units and firewall rules go; with --purge nothing of llamafleet is left but what is mounted
inside its trees (a shared models folder), which stays with its files and is named (runs last)."""

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

# A shared models folder bind-mounted over w2's models directory: the same filesystem as the rest of the
# host's root, so the same device number (rm --one-file-system alone would go through it).
SHARED = "/srv/shared-models"
MOUNT = (
    f"mkdir -p {SHARED} /var/lib/llamafleet/models && echo weights > {SHARED}/shared.gguf"
    f" && mount --bind {SHARED} /var/lib/llamafleet/models"
)
SHARED_FILES = f"cat {SHARED}/shared.gguf /var/lib/llamafleet/models/shared.gguf"
AROUND_THE_MOUNT = (
    "for p in /opt/llama.cpp /var/cache/llamafleet /etc/llamafleet; do [ -e $p ] && echo $p; done; "
    "ls -A /var/lib/llamafleet"
)


def changed(doc: dict) -> dict:
    return {h: c.get("changed", 0) for h, c in doc["recap"].items()}


def purge_lines(doc: dict) -> dict[str, str]:
    """host -> the reason of its purge of llamafleet's trees (one line per host)."""
    return {r["host"]: r["reason"] for r in doc["results"] if r["operation"].startswith("absent /opt/llama.cpp")}


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

    mounted = ssh(lab, "w2", MOUNT)
    assert mounted.returncode == 0, mounted.stderr
    for _ in range(2):  # the second purge changes nothing and says the same
        code, doc = invoke_json("teardown", lab.inventory, env, "--purge")
        assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
        lines = purge_lines(doc)
        assert "warning: left /var/lib/llamafleet/models: mount point" in lines["w2"], lines
        assert not any("left" in lines[host] for host in ("head", "w1")), lines
        assert ssh(lab, "w2", SHARED_FILES).stdout == "weights\nweights\n", "the mounted files stay"
        assert ssh(lab, "w2", AROUND_THE_MOUNT).stdout == "models\n", "all else of llamafleet's trees goes"
    assert set(changed(doc).values()) == {0} and lines["w2"].startswith("warning: left"), (changed(doc), lines)
    unmounted = ssh(lab, "w2", f"umount /var/lib/llamafleet/models && rm -r {SHARED}")
    assert unmounted.returncode == 0, unmounted.stderr

    code, doc = invoke_json("teardown", lab.inventory, env, "--purge")
    assert code == 0, [r for r in doc["results"] if r["status"] == "failed"] or doc["messages"]
    for host in HOSTS:
        assert ssh(lab, host, LEFT).stdout == "", (host, "left after --purge")
        assert ssh(lab, host, RULES).stdout == "", host
    code, doc = invoke_json("teardown", lab.inventory, env, "--purge")
    assert code == 0 and set(changed(doc).values()) == {0}, changed(doc)
