"""invoke bench sends the API key in a header over plain HTTP: to a head that is not this machine it says so, once,
on stderr (nothing is asked of a head here: the heads named are never reached)."""

from __future__ import annotations

import pytest

from llamafleet import bench, inventory

WARNING = "bench: warning: the API key travels in clear text to {} (plain HTTP to another machine)"


def head_inventory(tmp_path, head: str, key: bool = True, **head_vars: str) -> inventory.Inventory:
    """An inventory whose head is `head` (a name or address, never resolved or reached by these tests)."""
    path = tmp_path / "hosts.yml"
    path.write_text(
        f"all:\n  children:\n    head: {{hosts: {{h1: {{ansible_host: '{head}'}}}}}}\n"
        "    workers: {hosts: {w1: {ansible_host: 127.0.0.2}}}\n"
    )
    if key:
        (tmp_path / "key").write_text("sk-bench-key\n")
    return inventory.load(path, {"api_key_file": str(tmp_path / "key"), **head_vars})


@pytest.mark.parametrize(("head", "shown"), [("gpu-box", "gpu-box:8080"), ("gpu-box.lan.", "gpu-box.lan.:8080")])
def test_a_key_for_a_head_on_another_machine_is_warned_about_once(tmp_path, capsys, head, shown):
    api = bench.endpoint_api(head_inventory(tmp_path, head))
    err = capsys.readouterr().err
    assert err.startswith(WARNING.format(shown)) and err.count("\n") == 1, err
    assert "sk-bench-key" not in err and api.headers == {"Authorization": "Bearer sk-bench-key"}


@pytest.mark.parametrize("head", ["127.0.0.1", "127.0.0.3", "::1", "localhost", "LOCALHOST.", "api.localhost"])
def test_a_loopback_head_gets_the_key_without_a_warning(tmp_path, capsys, head):
    api = bench.endpoint_api(head_inventory(tmp_path, head))
    assert capsys.readouterr().err == "" and api.headers


def test_without_a_key_nothing_secret_travels_and_nothing_is_said(tmp_path, capsys):
    api = bench.endpoint_api(head_inventory(tmp_path, "gpu-box", key=False))
    assert capsys.readouterr().err == "" and api.headers == {}


def test_the_api_host_decides_where_the_key_goes(tmp_path, capsys):
    inv = head_inventory(tmp_path, "127.0.0.1", api_host="::1")
    assert bench.endpoint_api(inv).base == "http://[::1]:8080" and capsys.readouterr().err == ""
