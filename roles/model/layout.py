"""Where each tensor's bytes lie in a GGUF file: the header read on the controller, nothing loaded."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from llamafleet.errors import UsageError

DEFAULT_ALIGNMENT = 32
# ggml type id -> (elements per block, bytes per block), as ggml defines them (checked against the gguf package).
TYPE_SIZES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip
# GGUF metadata value types -> struct format of a scalar (8: string, 9: array are read apart).
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9
MAX_COUNT = 1 << 32  # more items than this in a header is a damaged file, not a model
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 1 << 16  # bytes of a key or a tensor name (ggml's names are 64): more is a damaged file


@dataclass(frozen=True)
class Tensor:
    """A tensor's name, ggml type and the byte range of its data in the file."""

    name: str
    type: int
    offset: int
    size: int


class _Reader:
    """The header read front to back; values llamafleet does not need are skipped, never built."""

    def __init__(self, handle: BinaryIO, label: str, size: int) -> None:
        self.handle, self.label, self.size = handle, label, size

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        data = self.handle.read(size)
        if len(data) != size:
            raise self.ends_early()
        return struct.unpack("<" + fmt, data)[0]

    def skip(self, count: int) -> None:
        if self.handle.tell() + count > self.size:
            raise self.ends_early()
        self.handle.seek(count, 1)

    def room(self, count: int, each: int) -> int:
        """`count`, when `count` items of at least `each` bytes fit in the rest of the file (a loop over more
        would only end at its end, slowly)."""
        if count * each > self.size - self.handle.tell():
            raise self.ends_early()
        return count

    def ends_early(self) -> UsageError:
        return UsageError(f"{self.label}: GGUF header ends early")

    def count(self) -> int:
        value = self.take("Q")
        if value > MAX_COUNT:
            raise UsageError(f"{self.label}: GGUF header is damaged (count {value})")
        return value

    def name(self) -> str:
        length = self.count()
        if length > MAX_NAME:
            raise UsageError(f"{self.label}: GGUF header is damaged (a name of {length} bytes)")
        data = self.handle.read(length)
        if len(data) != length:
            raise self.ends_early()
        return data.decode("utf-8", errors="replace")

    def value(self, key: str, kind: int) -> int | float | bool | None:
        """A scalar value; a string or an array is skipped (None). Arrays hold no arrays: llama.cpp's loader
        refuses them, and refusing them here keeps the reading flat (no recursion a file could drive)."""
        if kind == STRING:
            self.skip(self.count())
            return None
        if kind != ARRAY:
            return self.take(self.scalar(key, kind))
        inner, count = self.take("I"), self.count()
        if inner == ARRAY:
            raise UsageError(f"{self.label}: GGUF metadata {key[:80]!r} is an array of arrays (llama.cpp loads none)")
        if inner == STRING:
            for _ in range(self.room(count, 8)):
                self.skip(self.count())
        else:
            self.skip(count * struct.calcsize("<" + self.scalar(key, inner)))
        return None

    def scalar(self, key: str, kind: int) -> str:
        if kind not in SCALARS:
            raise UsageError(f"{self.label}: GGUF metadata {key[:80]!r} has an unknown value type {kind}")
        return SCALARS[kind]


def tensors(path: Path) -> list[Tensor]:
    """Every tensor of a GGUF file (one part of a split model) with the absolute range of its bytes."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        read = _Reader(handle, str(path), size)
        handle.seek(8)  # magic and version, checked by source.check_gguf
        n_tensors, n_kv = read.count(), read.count()
        read.room(n_kv, 8 + 4 + 1)
        alignment = DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key, kind = read.name(), read.take("I")
            value = read.value(key, kind)
            if key == "general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        infos = [_info(read) for _ in range(read.room(n_tensors, 8 + 4 + 4 + 8))]
        start = -(-handle.tell() // alignment) * alignment
    found = []
    for name, kind, count, offset in infos:
        if kind not in TYPE_SIZES:
            raise UsageError(f"{path}: tensor {name} has a ggml type ({kind}) llamafleet does not know")
        block, block_bytes = TYPE_SIZES[kind]
        tensor = Tensor(name, kind, start + offset, count // block * block_bytes)
        if tensor.offset + tensor.size > size:
            raise UsageError(f"{path}: tensor {name} lies past the end of the file (truncated?)")
        found.append(tensor)
    return found


def _info(read: _Reader) -> tuple[str, int, int, int]:
    name = read.name()
    n_dims = read.take("I")
    if n_dims > MAX_DIMS:
        raise UsageError(f"{read.label}: GGUF header is damaged (tensor {name[:80]!r} has {n_dims} dimensions)")
    dims = [read.take("Q") for _ in range(n_dims)]
    kind, offset = read.take("I"), read.take("Q")
    count = 1
    for dim in dims:
        count *= dim
    return name, kind, count, offset
