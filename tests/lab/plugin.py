"""pytest options of the lab tier (`--keep-lab`), loaded by tests/conftest.py through pytest_plugins."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--keep-lab",
        action="store_true",
        default=False,
        help="lab tier: leave the session's lab up after the tests (inspect it, then `invoke lab.down`).",
    )
