"""What the model tests share: small GGUF contents, made up or as record.py wrote them on a host."""

from __future__ import annotations

import hashlib

HEADER = b"GGUF\x03\x00\x00\x00"
CONTENT = HEADER + bytes(range(256)) * 16  # what tests/fixtures/recorded/model/record.py wrote
CONTENT_SHA = hashlib.sha256(CONTENT).hexdigest()


def gguf(size: int = 3 << 20, seed: int = 1) -> bytes:
    """`size` bytes or so after a GGUF header, different for each seed."""
    body = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
    return HEADER + body
