"""A role's typed settings built from one host's variables: each field from its variable, refusals located."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from inventory_tree import GOOD, write_tree

from llamafleet import inventory, rolesettings
from llamafleet.errors import InventoryError
from llamafleet.rolesettings import Refused, knob, line, whole, words


def never(value, variable):
    raise AssertionError(f"the reader of {variable.name} was asked about {value!r}")


@dataclass(frozen=True)
class Sample:
    host: str
    rpc_port: int = knob(whole(1))
    user: str = knob(line(), variable="llamafleet_user")
    rpc_devices: tuple[str, ...] = knob(words())
    rpc_threads: int | None = knob(never)
    ssh_connect_timeout: int = knob()


def host(tmp_path, **files: str):
    return inventory.load(write_tree(tmp_path, {"hosts.yml": GOOD, **files})).hosts["w1"]


def test_each_field_reads_its_variable_as_the_inventory_resolved_it(tmp_path):
    found = rolesettings.build(Sample, host(tmp_path, **{"host_vars/w1.yml": "rpc_devices: [CUDA0, CUDA1]\n"}))
    assert found == Sample("w1", 50052, "llama", ("CUDA0", "CUDA1"), None, 10)


def test_a_variable_whose_default_is_null_may_stay_null_without_asking_its_reader(tmp_path):
    assert rolesettings.build(Sample, host(tmp_path)).rpc_threads is None
    with pytest.raises(AssertionError, match="rpc_threads was asked about 4"):
        rolesettings.build(Sample, host(tmp_path / "set", **{"host_vars/w1.yml": "rpc_threads: 4\n"}))


def test_null_where_the_default_is_not_is_refused_naming_the_default(tmp_path):
    with pytest.raises(InventoryError) as caught:
        rolesettings.build(Sample, host(tmp_path, **{"host_vars/w1.yml": "ssh_connect_timeout: null\n"}), "hosts.yml")
    assert str(caught.value) == (
        "hosts.yml: host w1: ssh_connect_timeout: must not be null (leave it out for the default, 10)"
    )


def test_a_refusal_names_file_host_and_variable_or_the_place_given(tmp_path):
    w1 = host(tmp_path, **{"host_vars/w1.yml": 'rpc_devices: [CUDA0, "a\\tb"]\n'})
    with pytest.raises(InventoryError) as caught:
        rolesettings.build(Sample, w1, "hosts.yml")
    assert str(caught.value) == "hosts.yml: host w1: rpc_devices: item 'a\\tb' is not a single-line string"
    with pytest.raises(InventoryError) as caught:
        rolesettings.build(Sample, w1, where="w1")
    assert str(caught.value) == "w1: rpc_devices: item 'a\\tb' is not a single-line string"


def test_a_reader_refuses_only_what_the_type_lets_through():
    at_least_two = whole(2)
    with pytest.raises(Refused, match="1 is not a whole number >= 2"):
        at_least_two(1, None)
    with pytest.raises(Refused, match=r"item 'a\\nb' is not a single-line string"):
        words()(["ok", "a\nb"], None)
    assert words(numbers=True)([1, 0.5, "x"], None) == ("1", "0.5", "x")
