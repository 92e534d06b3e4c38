"""GGUF headers llama.cpp would not load (arrays of arrays, counts past the file's end): one line naming the file and
exit 2, before any connection, whatever the depth; real headers still read."""

from __future__ import annotations

import os
import struct
import time
from datetime import timedelta
from pathlib import Path

import pytest
from command_line import error_line, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inventory_tree import closed_loopback

from llamafleet.errors import UsageError
from llamafleet.roles.model import layout
from scripts import make_gguf

SETTINGS = settings(
    max_examples=int(os.environ.get("LLAMAFLEET_HYPOTHESIS_EXAMPLES", "150")),
    deadline=timedelta(seconds=20),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
U8, STRING, ARRAY, U32 = 0, 8, 9, 4
HOSTS = closed_loopback("rpc_cache_seed: true")


def text(value: str) -> bytes:
    return struct.pack("<Q", len(value.encode())) + value.encode()


def nested(depth: int, innermost: int = U8, key: str = "evil.nested", before: int = 0) -> bytes:
    """A GGUF v3 header of no tensor whose metadata `key` is an array nested `depth` deep (after `before` plain
    u32 values), its innermost array empty and of type `innermost`."""
    plain = b"".join(text(f"general.k{i}") + struct.pack("<II", U32, i) for i in range(before))
    value = struct.pack("<I", ARRAY) + struct.pack("<IQ", ARRAY, 1) * (depth - 1) + struct.pack("<IQ", innermost, 0)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, before + 1) + plain + text(key) + value


def refused(path: Path) -> str:
    with pytest.raises(UsageError) as caught:
        layout.tensors(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and caught.value.exit_code == 2
    return message


@pytest.mark.parametrize("depth", [2, 3, 100, 5000, 200_000])
def test_an_array_of_arrays_is_refused_naming_the_file_and_key_at_any_depth(tmp_path, depth):
    path = tmp_path / "nested.gguf"
    path.write_bytes(nested(depth))
    started = time.monotonic()
    assert refused(path) == f"{path}: GGUF metadata 'evil.nested' is an array of arrays (llama.cpp loads none)"
    assert time.monotonic() - started < 10  # a hang guard, not a speed target


@SETTINGS
@given(
    depth=st.integers(min_value=2, max_value=3000),
    innermost=st.sampled_from([U8, U32, STRING, ARRAY]),
    before=st.integers(min_value=0, max_value=5),
    key=st.text(min_size=1, max_size=40),
)
def test_any_nesting_anywhere_is_one_line_naming_the_file(tmp_path, depth, innermost, before, key):
    path = tmp_path / "nested.gguf"
    path.write_bytes(nested(depth, innermost, key, before))
    assert "is an array of arrays (llama.cpp loads none)" in refused(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (struct.pack("<I", STRING) + struct.pack("<Q", 1 << 31), "GGUF header ends early"),
        (struct.pack("<IIQ", ARRAY, STRING, 1 << 31), "GGUF header ends early"),
        (struct.pack("<IIQ", ARRAY, U32, 1 << 31), "GGUF header ends early"),
        (struct.pack("<IIQ", ARRAY, U32, 1 << 40), "GGUF header is damaged (count 1099511627776)"),
        (struct.pack("<I", 77), "GGUF metadata 'k' has an unknown value type 77"),
        (struct.pack("<II", ARRAY, 77), "GGUF metadata 'k' has an unknown value type 77"),
    ],
)
def test_counts_past_the_end_of_the_file_are_refused_without_reading_them(tmp_path, header, message):
    path = tmp_path / "damaged.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + text("k") + header + b"\0" * 64)
    started = time.monotonic()
    assert refused(path) == f"{path}: {message}"
    assert time.monotonic() - started < 10  # a hang guard, not a speed target


def test_more_tensors_or_keys_than_the_file_can_hold_are_refused(tmp_path):
    path = tmp_path / "many.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 31, 0) + b"\0" * 64)
    assert refused(path) == f"{path}: GGUF header ends early"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 31) + b"\0" * 64)
    assert refused(path) == f"{path}: GGUF header ends early"


def test_a_real_header_with_string_and_number_arrays_still_reads(tmp_path):
    path = tmp_path / "small.gguf"
    make_gguf.make_model(path, size="1M", seed=4)  # a vocabulary: arrays of strings, of floats, of integers
    found = layout.tensors(path)
    assert found and found[0].offset % 32 == 0 and all(t.offset + t.size <= path.stat().st_size for t in found)


def test_deploy_refuses_a_nested_model_with_one_line_before_any_connection(tmp_path, command_env):
    (tmp_path / "hosts.yml").write_text(HOSTS)
    model = tmp_path / "nested.gguf"
    model.write_bytes(nested(50_000))
    result = invoke("deploy", "-i", str(tmp_path / "hosts.yml"), "--model", str(model), env=command_env)
    error_line(result, f"{model}: GGUF metadata 'evil.nested' is an array of arrays")


def test_deploy_hashes_a_good_model_for_seeding_before_it_connects(tmp_path, command_env):
    (tmp_path / "hosts.yml").write_text(HOSTS)
    model = tmp_path / "small.gguf"
    make_gguf.make_model(model, size="1M", seed=4)
    result = invoke("deploy", "-i", str(tmp_path / "hosts.yml"), "--model", str(model), env=command_env)
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)  # then the closed ports
    records = list((Path(command_env["LLAMAFLEET_CACHE"]) / "tensors").glob("*.json"))
    assert len(records) == 1 and records[0].read_text() == "[]"  # no tensor of a 1 MB model is over 10 MiB
