"""RPC cache seeding: GGUF tensor ranges, FNV-1a-64 entry names, plans from a real worker's recorded cache."""

from __future__ import annotations

import io
from pathlib import Path

import gguf
import pytest
from recordings import recorded_lines, words

from llamafleet.channel import Ranges
from llamafleet.operations import Change, Facts, Feed, NoChange
from llamafleet.roles.model import layout, seed, source
from scripts import make_gguf

# The worker w1's cache after `deploy --model mid.gguf -e rpc_cache_seed=true` (make_gguf --size 200M --seed 8);
# 6 of its 11 entries had been written by rpc-server itself when the head loaded that model unseeded.
MID_SHA = "37ecdc0852700caf467df205926d7430850001f349bb07ff7cdfe57c46018106"
pytestmark = pytest.mark.usefixtures("controller_cache")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "small.gguf"
    make_gguf.make_model(path, size="1M", seed=3)
    return path


def fnv1a_64(data: bytes) -> int:
    """The reference: FNV-1a 64 as rpc-server computes it (slow, for small inputs)."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def test_tensor_ranges_match_the_gguf_reader(small):
    found = layout.tensors(small)
    reader = gguf.GGUFReader(small)
    assert [(t.name, t.offset, t.size) for t in found] == [
        (t.name, int(t.data_offset), int(t.n_bytes)) for t in reader.tensors
    ]


def test_type_sizes_are_ggmls():
    known = {int(kind): size for kind, size in gguf.GGML_QUANT_SIZES.items()}
    assert {kind: known[kind] for kind in layout.TYPE_SIZES} == layout.TYPE_SIZES


def test_a_truncated_model_is_refused_naming_the_tensor(small, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(small.read_bytes()[:-100])
    with pytest.raises(Exception, match=r"cut.gguf: tensor .* lies past the end of the file"):
        layout.tensors(cut)


def test_entries_are_fnv1a_64_of_each_large_tensor_and_hashed_once(small, monkeypatch, tmp_path):
    monkeypatch.setattr(seed, "THRESHOLD", 40_000)
    model = source.resolve(str(small), progress=False)
    found = seed.entries(model)
    data = small.read_bytes()
    large = [t for t in layout.tensors(small) if t.size > 40_000]
    assert len(found) == len(large) > 0
    for entry, tensor in zip(found, large, strict=True):
        assert entry.name == f"{fnv1a_64(data[tensor.offset : tensor.offset + tensor.size]):016x}"
        assert (entry.offset, entry.size, entry.source) == (tensor.offset, tensor.size, small)
    monkeypatch.setattr(seed, "_hashed", lambda path: pytest.fail("hashed again"))
    assert seed.entries(model) == found


def listing(name: str) -> list[str]:
    return recorded_lines(f"model/{name}")


def entries_of_w1(source: Path) -> tuple:
    names = [line.split()[0] for line in listing("rpc_cache_listing_w1.txt")]
    sizes = [int(line.split()[1]) for line in listing("rpc_cache_listing_w1.txt")]
    return tuple(seed.Entry(n, source, 1000 * i, s) for i, (n, s) in enumerate(zip(names, sizes, strict=True)))


class Mid:
    name, sha256 = "mid.gguf", MID_SHA


def plan_of(operation, *values):
    return operation.plan(Facts({f.key: v for f, v in zip(operation.facts, values, strict=True)}))


def test_a_worker_holding_every_entry_gets_nothing(tmp_path):
    found = entries_of_w1(tmp_path / "mid.gguf")
    record = "\n".join(e.name for e in found)
    result = plan_of(seed.seeded(Mid, found, "llama"), listing("rpc_cache_listing_w1.txt"), record)
    assert result == NoChange("11 cache entries of mid.gguf present")
    (mkdir, upload) = plan_of(seed.seeded(Mid, found, "llama"), listing("rpc_cache_listing_w1.txt"), None).steps
    assert words(mkdir.command) == ["install", "-d", "-m", "0700", seed.SEEDED_DIR]
    assert (upload.path, upload.content, upload.mode) == (
        f"{seed.SEEDED_DIR}/{MID_SHA}",
        f"{record}\n".encode(),
        "0600",
    )


def test_missing_entries_are_streamed_as_exact_ranges_under_their_names(tmp_path):
    found = entries_of_w1(tmp_path / "mid.gguf")
    extra = seed.Entry("00000000000000ff", tmp_path / "mid.gguf", 77, 11 << 20)
    lines = [line for line in listing("rpc_cache_listing_w1.txt") if not line.startswith(found[2].name)]
    result = plan_of(seed.seeded(Mid, (*found, extra), "llama"), lines, "\n".join(e.name for e in found))
    assert isinstance(result, Change) and result.reason.startswith("2 of 12 entries missing")
    feed, record = result.steps
    assert record.content.decode().split() == [e.name for e in (*found, extra)], "written after the entries"
    assert isinstance(feed, Feed) and feed.ranges == ((found[2].offset, found[2].size), (77, 11 << 20))
    argv = words(feed.command)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "seed", seed.CACHE, "llama",
        found[2].name, str(found[2].size), "00000000000000ff", str(11 << 20),
    ]  # fmt: skip


def test_the_cache_keeps_the_deployed_model_and_drops_entries_of_no_kept_model(tmp_path):
    found = entries_of_w1(tmp_path / "mid.gguf")
    state = listing("rpc_cache_state_w1.txt")
    assert plan_of(seed.cache_pruned(Mid, found, 2, None), state).reason.startswith("11 cache entries")
    other = ["1795457000.5 0123456789abcdef 12582912", "1795457001.5 .fedcba9876543210.lf-tmp 100"]
    result = plan_of(seed.cache_pruned(Mid, found, 2, None), other + state)
    assert words(result.steps[0].command)[3:] == ["remove", seed.CACHE, "0123456789abcdef", ".fedcba9876543210.lf-tmp"]


def test_entries_of_an_earlier_kept_model_go_first_beyond_the_size_limit(tmp_path):
    every = entries_of_w1(tmp_path / "mid.gguf")
    found, earlier = every[:9], every[9:]  # the deployed model has 9 entries; an earlier seeded one the other 2
    state = [*listing("rpc_cache_state_w1.txt"), "@" + "e" * 64, *(e.name for e in earlier)]
    assert isinstance(plan_of(seed.cache_pruned(Mid, found, 2, None), state), NoChange), "within keep_models"
    limit = sum(e.size for e in found) + earlier[0].size
    limited = plan_of(seed.cache_pruned(Mid, found, 2, limit), state)
    stamps = {line.split()[1]: float(line.split()[0]) for line in state if line.count(" ") == 2}
    oldest = min(earlier, key=lambda e: stamps[e.name])
    assert words(limited.steps[0].command)[3:] == ["remove", seed.CACHE, oldest.name]
    dropped = plan_of(seed.cache_pruned(Mid, found, 1, None), state)
    entries, records = (words(step.command) for step in dropped.steps)
    assert sorted(entries[5:]) == sorted(e.name for e in earlier)
    assert records == ["rm", "-f", "--", f"{seed.SEEDED_DIR}/{'e' * 64}"]


def test_sizes_parse_as_bytes_with_m_and_g_suffixes():
    assert [seed.parse_size(v) for v in (None, "1024", "512M", "20G")] == [None, 1024, 512 << 20, 20 << 30]


def test_ranges_read_the_pieces_in_order_and_refuse_a_short_file():
    stream = Ranges(io.BytesIO(b"0123456789"), ((2, 3), (0, 2), (8, 2)))
    assert b"".join(iter(lambda: stream.read(2), b"")) == b"2340189"
    short = Ranges(io.BytesIO(b"0123"), ((2, 5),))
    assert short.read(10) == b"23"
    with pytest.raises(OSError, match="ends before the range"):
        short.read(10)
