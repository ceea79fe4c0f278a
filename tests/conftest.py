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


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tiny test models' ops last microseconds; with two OpenMP threads on two (often shared) cores the
    thread hand-offs cost 10-100x the work. Results do not depend on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
