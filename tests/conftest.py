"""Shared test configuration: hypothesis profiles and the `--storage-url` option."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Storage is involved in most property tests, and its timing varies too much for deadlines.
settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--storage-url`, so a storage plugin's CI runs the contract suite on its backend."""
    parser.addoption(
        "--storage-url",
        action="append",
        default=[],
        metavar="URL",
        help=(
            "also run the storage contract suite on this storage URL (repeatable); "
            "a '{name}' in the URL is replaced by a name unique to each test, "
            "otherwise the URL must give an empty store to every test"
        ),
    )
