"""Role firewall with ufw: its status parsed from real ufw output, the rules planned from it."""

from __future__ import annotations

import pytest
from firewall_recordings import HEAD, HEAD_RULES, OLD_HEAD, UFW, W1, W2, F, plan, recorded, shell_words

from llamafleet.errors import OperationError
from llamafleet.operations import Facts, NoChange


def api_allowed_from(address: str) -> list[str]:
    """The ufw command that lets `address` reach the API port (8080), before any other rule."""
    return ["ufw", "prepend", "allow", "from", address, "to", "any", "port", "8080", "proto", "tcp",
            "comment", "llamafleet api"]  # fmt: skip


def test_ufw_status_reads_state_default_and_rules():
    fresh = F.UfwStatus().process(recorded("ufw_status_fresh.txt"))
    assert fresh == F.UfwState(False, None, (), True)
    applied = F.UfwStatus().process(recorded("ufw_status_applied.txt"))
    assert applied.active and applied.default_incoming == "deny"
    assert ("allow", "22/tcp", "comment", "llamafleet ssh") in applied.rules
    assert ("deny", "8080/tcp", "comment", "llamafleet api") in applied.rules
    assert F.UfwStatus().process([]) is None


def test_ufw_fresh_host_allows_ssh_first():
    result = plan(UFW.rules(HEAD_RULES), "ufw_status_fresh.txt")
    assert shell_words(result) == [
        ["ufw", "allow", "22/tcp", "comment", "llamafleet ssh"],
        *[api_allowed_from(address) for address in (HEAD, W1, W2)],
        ["ufw", "deny", "8080/tcp", "comment", "llamafleet api"],
    ]
    assert result.reason == "5 missing"
    enable = plan(UFW.enabled(), "ufw_status_fresh.txt")
    assert shell_words(enable) == [["ufw", "--force", "enable"]]


def test_ufw_converged_needs_nothing():
    assert plan(UFW.rules(HEAD_RULES), "ufw_status_applied.txt") == NoChange("5 llamafleet rule(s) present, none stale")
    assert plan(UFW.enabled(), "ufw_status_applied.txt") == NoChange("ufw active, ufw.service enabled")


def test_ufw_stale_source_is_deleted_and_a_foreign_rule_kept():
    result = plan(UFW.rules(HEAD_RULES), "ufw_status_stale.txt")
    assert shell_words(result) == [
        ["ufw", "delete", "allow", "from", OLD_HEAD, "to", "any", "port", "8080", "proto", "tcp"],
        api_allowed_from(HEAD),
    ]
    assert result.reason == "1 missing, 1 stale"
    assert ("allow", "9999/tcp") in F.UfwStatus().process(recorded("ufw_status_stale.txt")).rules


def test_ufw_without_a_status_is_an_error():
    with pytest.raises(OperationError, match="ufw status"):
        UFW.rules(HEAD_RULES).plan(Facts({F.UfwStatus().key: None}))
