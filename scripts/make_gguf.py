#!/usr/bin/env python3
"""Write a random-weight llama GGUF model of a chosen size, byte-identical for a given seed, for tests."""

import argparse
import dataclasses
import hashlib
import itertools
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NoReturn

import gguf
import numpy as np

DEFAULT_SIZE = "1M"
RMS_EPS = 1e-5
# Weights are uniform in [-a, a) with a = 0.02 * sqrt(3): standard deviation 0.02, small enough to avoid NaNs.
WEIGHT_STEP = np.float32(0.02 * 3**0.5 / 2**23)
# Elements generated at once; even, so that the bytes written do not depend on it (two values per 64-bit draw).
CHUNK_ELEMENTS = 1 << 20
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
WEIGHT_TYPES = {"f32": np.dtype("<f4"), "f16": np.dtype("<f2")}
NORM_TYPE = np.dtype("<f4")
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}
SPECIAL_TOKENS = (("<unk>", gguf.TokenType.UNKNOWN), ("<s>", gguf.TokenType.CONTROL), ("</s>", gguf.TokenType.CONTROL))
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
MIN_VOCAB = len(SPECIAL_TOKENS) + 256 + 1
SPACE = "\u2581"  # how SentencePiece spells a leading space
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# (n_embd, n_head, n_vocab) per size tier; n_ff is 3 * n_embd and --size only varies the layer count within a tier.
TIERS = ((64, 4, 512), (128, 4, 1024), (256, 8, 2048), (512, 8, 4096), (1024, 16, 8192), (2048, 16, 32000),
         (4096, 32, 32000))  # fmt: skip
BLOCK_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")


@dataclasses.dataclass(frozen=True)
class Dims:
    """Hyperparameters of the generated model."""

    n_embd: int = 64
    n_layer: int = 2
    n_ff: int = 192
    n_head: int = 4
    n_vocab: int = 512
    ctx: int = 2048


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One tensor to write, with its numpy shape (ggml's reversed); 1-D tensors are norms (ones, F32)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))

    @property
    def is_norm(self) -> bool:
        return len(self.shape) == 1


def parse_size(text: str) -> int:
    """Bytes in a size such as 1M, 50M, 1.5G or 123456 (K/M/G/T are powers of 1024; a trailing B or iB is allowed)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"size {text!r} is not like 1M, 50M or 2G")
    return int(float(match[1]) * SIZE_UNITS[match[2].upper()])


def param_count(dims: Dims) -> int:
    """Weights in the model: embeddings, output, norms and the blocks."""
    e, f = dims.n_embd, dims.n_ff
    per_layer = 4 * e * e + 3 * e * f + 2 * e
    return 2 * dims.n_vocab * e + e + dims.n_layer * per_layer


def tier_dims(n_embd: int, n_head: int, n_vocab: int, n_layer: int = 2) -> Dims:
    return Dims(n_embd=n_embd, n_layer=n_layer, n_ff=3 * n_embd, n_head=n_head, n_vocab=n_vocab)


def plan_dims(size: int, weight_type: str = "f32") -> Dims:
    """Dimensions of a model whose file is about `size` bytes: the largest tier fitting two layers, then layers."""
    target = size / WEIGHT_TYPES[weight_type].itemsize
    tiers = [tier_dims(*tier) for tier in TIERS]
    chosen = max((tier for tier in tiers if param_count(tier) <= target), key=param_count, default=tiers[0])
    fixed = param_count(dataclasses.replace(chosen, n_layer=0))
    per_layer = param_count(dataclasses.replace(chosen, n_layer=1)) - fixed
    return dataclasses.replace(chosen, n_layer=max(1, round((target - fixed) / per_layer)))


def check_dims(dims: Dims) -> None:
    """Raise ValueError for dimensions llama.cpp cannot load."""
    for field in dataclasses.fields(dims):
        if getattr(dims, field.name) < 1:
            raise ValueError(f"{field.name} must be at least 1, got {getattr(dims, field.name)}")
    if dims.n_embd % dims.n_head or (dims.n_embd // dims.n_head) % 2:
        raise ValueError(f"n_embd {dims.n_embd} must split into n_head {dims.n_head} heads of an even size")
    if dims.n_vocab < MIN_VOCAB:
        raise ValueError(f"n_vocab must be at least {MIN_VOCAB} (3 special + 256 byte tokens + 1), got {dims.n_vocab}")


def resolve_dims(size: int | str | None, weight_type: str, overrides: dict[str, int | None]) -> Dims:
    """Dimensions planned from `size`, with explicitly given ones taking precedence."""
    unknown = set(overrides) - {field.name for field in dataclasses.fields(Dims)}
    if unknown:
        raise ValueError(f"unknown dimension(s): {', '.join(sorted(unknown))}")
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"type must be one of {', '.join(WEIGHT_TYPES)}, got {weight_type!r}")
    size_bytes = parse_size(size) if isinstance(size, str) else size
    dims = plan_dims(size_bytes or parse_size(DEFAULT_SIZE), weight_type)
    dims = dataclasses.replace(dims, **{key: value for key, value in overrides.items() if value is not None})
    check_dims(dims)
    return dims


def word_pieces() -> Iterator[str]:
    """Distinct SentencePiece-style pieces: the space mark, then letter strings with and without it, shortest first."""
    yield SPACE
    for length in itertools.count(1):
        for letters in itertools.product(LETTERS, repeat=length):
            yield SPACE + "".join(letters)
            yield "".join(letters)


def vocabulary(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of an SPM vocabulary with byte fallback."""
    tokens = [text for text, _ in SPECIAL_TOKENS] + [f"<0x{byte:02X}>" for byte in range(256)]
    types = [int(kind) for _, kind in SPECIAL_TOKENS] + [int(gguf.TokenType.BYTE)] * 256
    scores = [0.0] * len(tokens)
    pieces = list(itertools.islice(word_pieces(), n_vocab - len(tokens)))
    tokens += pieces
    types += [int(gguf.TokenType.NORMAL)] * len(pieces)
    scores += [float(-rank) for rank in range(len(pieces))]
    return tokens, scores, types


def tensor_specs(dims: Dims, weight_type: str) -> list[TensorSpec]:
    """Tensors of a llama model in file order."""
    e, f = dims.n_embd, dims.n_ff
    block_shapes = {"attn_norm": (e,), "attn_q": (e, e), "attn_k": (e, e), "attn_v": (e, e), "attn_output": (e, e),
                    "ffn_norm": (e,), "ffn_gate": (f, e), "ffn_up": (f, e), "ffn_down": (e, f)}  # fmt: skip
    named = [("token_embd.weight", (dims.n_vocab, e))]
    named += [
        (f"blk.{layer}.{part}.weight", block_shapes[part]) for layer in range(dims.n_layer) for part in BLOCK_TENSORS
    ]
    named += [("output_norm.weight", (e,)), ("output.weight", (dims.n_vocab, e))]
    weights = WEIGHT_TYPES[weight_type]
    return [TensorSpec(name, shape, NORM_TYPE if len(shape) == 1 else weights) for name, shape in named]


def add_metadata(writer: gguf.GGUFWriter, dims: Dims, weight_type: str, seed: int) -> None:
    """Hyperparameter and tokenizer keys llama.cpp needs to load a llama model."""
    writer.add_name(f"llamafleet random llama (seed {seed})")
    writer.add_file_type(int(FILE_TYPES[weight_type]))
    writer.add_context_length(dims.ctx)
    writer.add_embedding_length(dims.n_embd)
    writer.add_block_count(dims.n_layer)
    writer.add_feed_forward_length(dims.n_ff)
    writer.add_head_count(dims.n_head)
    writer.add_head_count_kv(dims.n_head)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_rope_dimension_count(dims.n_embd // dims.n_head)
    tokens, scores, types = vocabulary(dims.n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(True)


def random_weights(bit_generator: np.random.PCG64, count: int, dtype: np.dtype) -> np.ndarray:
    """`count` small uniform weights from raw 64-bit draws, whose stream numpy keeps stable across releases."""
    raw = bit_generator.random_raw((count + 1) // 2).astype("<u8", copy=False)
    values = (raw.view("<i4")[:count] >> 8).astype(np.float32)  # 24 signed bits, exact in float32
    values *= WEIGHT_STEP
    return values.astype(dtype, copy=False)


def tensor_chunks(spec: TensorSpec, seed: int, index: int) -> Iterator[np.ndarray]:
    """The data of one tensor in chunks; each tensor has its own stream so the order of generation is irrelevant."""
    if spec.is_norm:
        yield np.ones(spec.count, dtype=spec.dtype)
        return
    bit_generator = np.random.PCG64(np.random.SeedSequence([seed, index]))
    for start in range(0, spec.count, CHUNK_ELEMENTS):
        yield random_weights(bit_generator, min(CHUNK_ELEMENTS, spec.count - start), spec.dtype)


def write_padding(fp: BinaryIO, alignment: int) -> None:
    fp.write(b"\0" * (-fp.tell() % alignment))


def write_gguf(path: Path, dims: Dims, weight_type: str, seed: int) -> None:
    """Write the model to `path`: header, metadata and tensor infos through gguf, then the data tensor by tensor."""
    specs = tensor_specs(dims, weight_type)
    writer = gguf.GGUFWriter(path, "llama")
    add_metadata(writer, dims, weight_type, seed)
    for spec in specs:
        writer.add_tensor_info(spec.name, spec.shape, spec.dtype, spec.count * spec.dtype.itemsize)
    # GGUFWriter.add_tensor would keep every tensor in memory until the end; stream the data ourselves instead.
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    with open(path, "ab") as fp:
        write_padding(fp, writer.data_alignment)
        for index, spec in enumerate(specs):
            for chunk in tensor_chunks(spec, seed, index):
                fp.write(memoryview(chunk))
            write_padding(fp, writer.data_alignment)
        fp.flush()
        os.fsync(fp.fileno())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        while block := fp.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def make_model(
    path: str | os.PathLike[str],
    *,
    size: int | str | None = None,
    seed: int = 0,
    weight_type: str = "f32",
    **dims: int | None,
) -> tuple[int, str]:
    """Write a random llama model to `path` (via a temporary name in its folder) and return (bytes, sha256).

    `size` (bytes, or text like "50M") picks the dimensions; `dims` (n_embd, n_layer, n_ff, n_head, n_vocab, ctx)
    override them. Raises ValueError for dimensions llama.cpp could not load.
    """
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    model = resolve_dims(size, weight_type, dims)
    target = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        write_gguf(temp, model, weight_type, seed)
        temp.chmod(0o644)
        digest = sha256_of(temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target.stat().st_size, digest


class OneLineParser(argparse.ArgumentParser):
    """Argument parser whose errors are a single line (exit status 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def size_argument(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def count_argument(text: str) -> int:
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def seed_argument(text: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise argparse.ArgumentTypeError(f"seed {text!r} is not a non-negative integer")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="make_gguf.py", description=__doc__)
    parser.add_argument("out", type=Path, help="GGUF file to write (its folder must exist)")
    parser.add_argument("--size", type=size_argument, help=f"approximate file size, e.g. 1M, 50M, 2G ({DEFAULT_SIZE})")
    parser.add_argument("--seed", type=seed_argument, default=0, help="random seed; same seed, same bytes (0)")
    parser.add_argument("--type", dest="weight_type", choices=sorted(WEIGHT_TYPES), default="f32",
                        help="type of the 2-D weights; norms are always f32 (f32)")  # fmt: skip
    for field in dataclasses.fields(Dims):
        flag = "--" + field.name.replace("_", "-")
        chosen_by = f"default {field.default}" if field.name == "ctx" else "default picked by --size"
        parser.add_argument(flag, dest=field.name, type=count_argument, help=f"{field.name} ({chosen_by})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.error(f"folder {args.out.parent} does not exist")
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(Dims)}
    try:
        resolve_dims(args.size, args.weight_type, overrides)
    except ValueError as err:
        parser.error(str(err))
    try:
        size, digest = make_model(args.out, size=args.size, seed=args.seed, weight_type=args.weight_type, **overrides)
    except OSError as err:
        print(f"{parser.prog}: error: cannot write {args.out}: {err}", file=sys.stderr)
        return 1
    print(f"{args.out} {size} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
