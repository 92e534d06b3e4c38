"""Role firewall with nftables: its table parsed from real nft output, the file and loads planned from them."""

from __future__ import annotations

import pytest
from firewall_recordings import HEAD, NFT, OLD_HEAD, WORKER_RULES, F, P, plan, recorded, shell_words
from recordings import words

from llamafleet import facts
from llamafleet.operations import NoChange, Upload


def test_nft_table_of_a_host_without_ours_is_none():
    assert F.NftTable().process(recorded("nft_table_fresh.txt")) is None


def test_nft_table_lists_our_chain_and_rules_in_order():
    state = F.NftTable().process(recorded("nft_table_applied.txt"))
    assert state.chains == (("input", "input", 0, "accept"),)
    assert state.rules == (
        F.NftRule("tcp", 22, None, (), "accept", "llamafleet ssh"),
        F.NftRule("tcp", 50052, "ip", (HEAD,), "accept", "llamafleet rpc"),
        F.NftRule("tcp", 50052, None, (), "drop", "llamafleet rpc"),
    )


def test_nft_rule_reads_address_sets_and_prefixes():
    rule = {
        "comment": "llamafleet api",
        "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"set": [{"prefix": {"addr": "10.1.0.0", "len": 16}}, "10.2.3.4"]},
                }
            },
            {"accept": None},
        ],
    }
    assert F._nft_rule(rule) == F.NftRule("tcp", 8080, "ip", ("10.1.0.0/16", "10.2.3.4"), "accept", "llamafleet api")


def test_rendered_table_is_what_the_host_saved():
    text = "\n".join(recorded("nft_table_file_applied.txt")[1:]) + "\n"
    assert NFT.render_table(WORKER_RULES) == text
    assert text.startswith("# Managed by llamafleet")
    assert "table inet llamafleet\ndelete table inet llamafleet\n" in text


def test_rendered_table_splits_ipv4_and_ipv6():
    text = NFT.render_table(P.Ruleset((P.Rule(8080, ("fd00::/64", "10.0.0.0/8"), "api"),), ssh_port=2222))
    lines = [line.strip() for line in text.splitlines() if "dport" in line]
    assert lines == [
        'tcp dport 2222 accept comment "llamafleet ssh"',
        'tcp dport 8080 ip saddr { 10.0.0.0/8 } accept comment "llamafleet api"',
        'tcp dport 8080 ip6 saddr { fd00::/64 } accept comment "llamafleet api"',
        'tcp dport 8080 drop comment "llamafleet api"',
    ]


def test_nftables_fresh_host_gets_file_then_load():
    result = plan(NFT.table(WORKER_RULES), "nft_table_file_fresh.txt", "nft_table_fresh.txt")
    assert result.reason == "table file missing"
    upload, load = result.steps
    assert isinstance(upload, Upload) and upload.path == "/etc/nftables.d/llamafleet.nft"
    assert upload.content.decode() == NFT.render_table(WORKER_RULES)
    assert words(load.command) == ["nft", "-f", "/etc/nftables.d/llamafleet.nft"]


def test_nftables_converged_needs_nothing():
    result = plan(NFT.table(WORKER_RULES), "nft_table_file_applied.txt", "nft_table_applied.txt")
    assert result == NoChange("table inet llamafleet loaded and saved, 1 guarded port(s)")
    assert isinstance(plan(NFT.loaded_at_boot(), "nftables_conf_applied.txt"), NoChange)
    assert plan(NFT.service_enabled(), "nftables_unit_applied.txt") == NoChange("nftables.service enabled")


def test_nftables_stale_source_goes_by_replacing_the_table():
    result = plan(NFT.table(WORKER_RULES), "nft_table_file_stale.txt", "nft_table_stale.txt")
    assert result.reason == "table file differs"
    assert OLD_HEAD in "\n".join(recorded("nft_table_file_stale.txt"))
    assert OLD_HEAD not in result.steps[0].content.decode()
    assert words(result.steps[1].command) == ["nft", "-f", "/etc/nftables.d/llamafleet.nft"]


def test_nftables_table_changed_in_the_kernel_only_is_reloaded():
    # The file is current but the kernel still holds the old head's table (someone ran nft by hand).
    result = plan(NFT.table(WORKER_RULES), "nft_table_file_applied.txt", "nft_table_stale.txt")
    assert result.reason == "table inet llamafleet in the kernel differs from its file"
    assert shell_words(result) == [["nft", "-f", "/etc/nftables.d/llamafleet.nft"]]
    missing = plan(NFT.table(WORKER_RULES), "nft_table_file_applied.txt", "nft_table_fresh.txt")
    assert missing.reason == "table inet llamafleet not loaded"


def test_nftables_conf_gets_the_include_appended():
    result = plan(NFT.loaded_at_boot(), "nftables_conf_fresh.txt")
    [command] = shell_words(result)
    assert command[-2:] == [">>", "/etc/nftables.conf"]
    assert 'include "/etc/nftables.d/llamafleet.nft"' in command


@pytest.mark.parametrize(
    ("conf", "found"),
    [
        ('include "/etc/nftables.d/llamafleet.nft"', True),
        ('  include "/etc/nftables.d/*.nft"', True),
        ('include "/etc/nftables.d/*.conf"', False),
        ('# include "/etc/nftables.d/llamafleet.nft"', False),
        (None, False),
    ],
)
def test_nftables_conf_includes_our_file_only_through_an_active_include(conf, found):
    assert NFT.includes(conf) is found


def test_nftables_service_is_enabled_not_started():
    result = plan(NFT.service_enabled(), "nftables_unit_fresh.txt")
    assert shell_words(result) == [["systemctl", "enable", "nftables.service"]]
    assert facts.SystemdUnit("nftables.service").key == NFT.service_enabled().facts[0].key
