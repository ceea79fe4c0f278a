"""Shared test fixtures: paths to the parity fixtures copied from the authors' code (tests/fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the Hub; anything that tries must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "s2-tiny-a"
TINY_SHARDED = FIXTURES / "s2-tiny-a-sharded"
EXPECTED = TINY / "expected"
INVENTORY = FIXTURES / "s2-pro-inventory"


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return TINY


@pytest.fixture(scope="session")
def expected_dir() -> Path:
    return EXPECTED
