"""Unit tests of scripts/make_gguf.py: byte-identical seeded models that parse back as llama GGUF of the asked size."""

import hashlib
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from scripts import make_gguf

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_gguf.py"
# The default model (--size 1M, seed 0). If this changes, every test pinning a model's sha256 must change with it.
PINNED_SIZE = 1130144
PINNED_SHA256 = "79b791ab918e76d7329f6ddc132c4ca86ca753ccc475b69e5502055c92bc412c"
TINY = {"n_embd": 32, "n_layer": 2, "n_ff": 48, "n_head": 2, "n_vocab": 300, "ctx": 256}
BLOCK_PARTS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")


pytestmark = pytest.mark.unit


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def test_default_model_is_pinned_and_reported_truthfully(tmp_path):
    size, digest = make_gguf.make_model(tmp_path / "model.gguf", size="1M", seed=0)
    assert (size, digest) == (PINNED_SIZE, PINNED_SHA256)
    assert (tmp_path / "model.gguf").stat().st_size == size
    assert sha256(tmp_path / "model.gguf") == digest


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = make_gguf.make_model(tmp_path / "a.gguf", seed=5, **TINY)
    again = make_gguf.make_model(tmp_path / "b.gguf", seed=5, **TINY)
    other = make_gguf.make_model(tmp_path / "c.gguf", seed=6, **TINY)
    assert first == again
    assert other[0] == first[0]
    assert other[1] != first[1]
    weights = [gguf.GGUFReader(tmp_path / name).tensors[0].data for name in ("a.gguf", "c.gguf")]
    assert not np.array_equal(*weights)


def test_bytes_do_not_depend_on_generation_chunk_size(tmp_path, monkeypatch):
    reference = make_gguf.make_model(tmp_path / "a.gguf", seed=3, **TINY)
    monkeypatch.setattr(make_gguf, "CHUNK_ELEMENTS", 998)
    assert make_gguf.make_model(tmp_path / "b.gguf", seed=3, **TINY) == reference


@pytest.mark.parametrize(("weight_type", "file_type"), [("f32", 0), ("f16", 1)])
def test_model_parses_back_as_llama(tmp_path, weight_type, file_type):
    make_gguf.make_model(tmp_path / "m.gguf", seed=1, weight_type=weight_type, **TINY)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    expected = {"general.architecture": "llama", "llama.context_length": 256, "llama.embedding_length": 32,
                "llama.block_count": 2, "llama.feed_forward_length": 48, "llama.attention.head_count": 2,
                "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16, "tokenizer.ggml.model": "llama",
                "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.bos_token_id": 1,
                "tokenizer.ggml.eos_token_id": 2}  # fmt: skip
    assert {key: field(reader, key) for key in expected} == expected
    assert field(reader, "general.name")
    assert field(reader, "general.file_type") == file_type
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == len(field(reader, "tokenizer.ggml.scores")) == len(field(reader, "tokenizer.ggml.token_type"))
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3:259] == [f"<0x{byte:02X}>" for byte in range(256)]
    assert len(tokens) == len(set(tokens)) == 300
    assert field(reader, "tokenizer.ggml.token_type")[3:259] == [int(gguf.TokenType.BYTE)] * 256


@pytest.mark.parametrize(("weight_type", "ggml_type"), [("f32", "F32"), ("f16", "F16")])
def test_tensors_have_llama_names_shapes_and_small_weights(tmp_path, weight_type, ggml_type):
    make_gguf.make_model(tmp_path / "m.gguf", seed=1, weight_type=weight_type, **TINY)
    tensors = {tensor.name: tensor for tensor in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    e, f, v = 32, 48, 300
    shapes = {"token_embd.weight": (v, e), "output_norm.weight": (e,), "output.weight": (v, e)}
    block = {"attn_norm": (e,), "attn_q": (e, e), "attn_k": (e, e), "attn_v": (e, e), "attn_output": (e, e),
             "ffn_norm": (e,), "ffn_gate": (f, e), "ffn_up": (f, e), "ffn_down": (e, f)}  # fmt: skip
    shapes |= {f"blk.{layer}.{part}.weight": block[part] for layer in range(2) for part in BLOCK_PARTS}
    assert {name: tensor.data.shape for name, tensor in tensors.items()} == shapes
    for name, tensor in tensors.items():
        data = np.asarray(tensor.data, dtype=np.float32)
        if len(shapes[name]) == 1:
            assert tensor.tensor_type.name == "F32", name
            assert np.all(data == 1.0), name
        else:
            assert tensor.tensor_type.name == ggml_type, name
            assert np.all(np.abs(data) < 0.035), name
            assert 0.015 < data.std() < 0.025, name


@pytest.mark.parametrize("size", ["1M", "20M"])
def test_cli_size_lands_near_request_and_prints_one_line(tmp_path, size):
    out = tmp_path / "model.gguf"
    done = subprocess.run([sys.executable, str(SCRIPT), str(out), "--size", size], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    path, written, digest = done.stdout.split()
    assert (path, int(written), digest) == (str(out), out.stat().st_size, sha256(out))
    assert 0.8 < out.stat().st_size / make_gguf.parse_size(size) < 1.25
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_explicit_dimensions_override_size(tmp_path):
    make_gguf.make_model(tmp_path / "m.gguf", size="20M", n_layer=1, n_vocab=400)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert field(reader, "llama.block_count") == 1
    assert len(field(reader, "tokenizer.ggml.tokens")) == 400
    assert field(reader, "llama.embedding_length") == make_gguf.plan_dims(20 << 20).n_embd


def test_failed_write_leaves_neither_model_nor_temp_file(tmp_path, monkeypatch):
    def broken(path, *args):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(make_gguf, "write_gguf", broken)
    with pytest.raises(OSError, match="disk full"):
        make_gguf.make_model(tmp_path / "m.gguf", **TINY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--size", "lots"],
        ["--size", "0"],
        ["--seed", "-1"],
        ["--type", "q4_0"],
        ["--n-embd", "0"],
        ["--n-embd", "96", "--n-head", "5"],
        ["--n-vocab", "100"],
        ["--bogus"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv):
    if argv:
        argv = [str(tmp_path / "m.gguf"), *argv]
    with pytest.raises(SystemExit) as exited:
        make_gguf.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("make_gguf.py: error: ")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        make_gguf.main([str(tmp_path / "absent" / "m.gguf")])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"make_gguf.py: error: folder {tmp_path / 'absent'} does not exist\n"


def test_make_model_rejects_unknown_dimension(tmp_path):
    with pytest.raises(ValueError, match="n_heads"):
        make_gguf.make_model(tmp_path / "m.gguf", n_heads=4)
