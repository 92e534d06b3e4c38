"""What several unit test modules share: a controller cache of the test's own, the environment of a command run."""

from __future__ import annotations

from pathlib import Path

import pytest
from command_line import environment


@pytest.fixture
def controller_cache(tmp_path, monkeypatch) -> Path:
    """LLAMAFLEET_CACHE in the test's folder (the cache it names is empty), and no Hugging Face token or endpoint."""
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def command_env(tmp_path) -> dict[str, str]:
    """The environment of a command the test runs (command_line.invoke): a controller cache of the test's own
    (empty), no default inventory."""
    return environment(tmp_path / "cache")
