"""A head takes at most 16 RPC workers (llama.cpp's GGML_RPC_MAX_SERVERS): more are refused as the inventory loads."""

from __future__ import annotations

import pytest

from llamafleet import inventory
from llamafleet.errors import InventoryError
from tests.command_line import environment, error_line, invoke

INVENTORY = """\
all:
  children:
    head:
      hosts:
        h1: {{ansible_host: 127.0.0.1}}
    workers:
      hosts:
        w[01:{last:02d}]: {{}}
"""


def write(tmp_path, workers: int):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY.format(last=workers))
    return path


def test_sixteen_workers_load(tmp_path):
    assert len(inventory.load(write(tmp_path, 16)).workers) == 16


@pytest.mark.parametrize("workers", [17, 40])
def test_more_than_sixteen_workers_are_refused_naming_the_group(tmp_path, workers):
    with pytest.raises(InventoryError, match=f"group workers: {workers} hosts, but llama-server takes at most 16"):
        inventory.load(write(tmp_path, workers))


def test_the_command_line_says_it_in_one_line_before_any_connection(tmp_path):
    error_line(invoke("provision", "-i", str(write(tmp_path, 17)), env=environment()), "at most 16 RPC workers")
