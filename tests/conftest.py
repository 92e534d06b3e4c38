"""Shared pytest setup: tiers by folder (unit, sshd, lab) and the sshd fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "unit"))

import sshd_server  # noqa: E402

# Property tests draw the same examples on every run (a test run is a verdict on the code, not a lottery);
# LLAMAFLEET_HYPOTHESIS=explore draws new ones each run, to look for what the fixed draw misses.
settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("LLAMAFLEET_HYPOTHESIS", "fixed"))

TIERS = ("unit", "sshd", "lab")
pytest_plugins = ["tests.lab.plugin"]  # --keep-lab, wherever pytest is started from


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
    # Tests marked `last` (teardown of the session's lab) run after all others; the sort is stable.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """A real sshd on a loopback port (installed when missing), stopped at the end of the session."""
    server = sshd_server.start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()
