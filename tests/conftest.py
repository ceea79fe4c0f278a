"""Shared test fixtures: the tiny model and processor, and the one loader of the outputs recorded from the
authors' code (tests/fixtures/s2-tiny-a/expected)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

# Tests never reach the Hub; anything that tries must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "s2-tiny-a"
TINY_SHARDED = FIXTURES / "s2-tiny-a-sharded"
EXPECTED = TINY / "expected"
INVENTORY = FIXTURES / "s2-pro-inventory"


@functools.cache
def expected_tensors(name: str) -> dict[str, torch.Tensor]:
    """The tensors of ``expected/<name>.safetensors``, read on first use and shared by every test (read-only)."""
    return load_file(EXPECTED / f"{name}.safetensors")


@functools.cache
def expected_json(name: str) -> Any:
    """The contents of ``expected/<name>.json``, read on first use and shared by every test (read-only)."""
    return json.loads((EXPECTED / f"{name}.json").read_text())


def expected_cases() -> dict[str, dict]:
    """The recorded cases of ``expected/inputs.json`` (text, references, chunking) by name."""
    return {case["name"]: case for case in expected_json("inputs")["cases"]}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tiny test models' ops last microseconds; with two OpenMP threads on two (often shared) cores the
    thread hand-offs cost 10-100x the work. Results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    """The tiny fixture model in fp32, one fresh instance per test module (tests may change its state)."""
    from transformers_fish_s2 import FishS2ForConditionalGeneration

    return FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def processor():
    """The tiny fixture's processor (tokenizer + codec), one per test module."""
    from transformers_fish_s2 import FishS2Processor

    return FishS2Processor.from_pretrained(TINY)


GUARD_ADDRESS_SPACE = 8 * 2**30
"""Address-space limit of a guarded child: a regression that allocates what a hostile input asks for dies there
instead of exhausting the (shared) test machine."""

_GUARDED_CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
exec(sys.argv[1])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = {}
for name, case in json.loads(sys.argv[2]).items():
    start = time.perf_counter()
    try:
        exec(case)
        error = None
    except BaseException as caught:
        error = f"{type(caught).__name__}: {caught}"
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes[name] = {"error": error, "seconds": seconds, "rss_growth_mb": (peak - baseline) / 1024}
print(json.dumps(outcomes))
"""


def guarded_calls(cases: dict[str, str], setup: str = "", timeout: float = 300) -> dict[str, dict]:
    """Run each of ``cases`` (Python source, by name) in one fresh interpreter after ``setup``; report how each
    ended: ``{"error": "Type: message" or None, "seconds": its wall time, "rss_growth_mb": ...}``.

    ``rss_growth_mb`` is the process's peak RSS after the case minus the peak after ``setup`` (imports,
    fixtures), so it bounds what this case and the ones before it allocated at their peak. The child inherits
    PYTHONPATH and runs under :data:`GUARD_ADDRESS_SPACE`.
    """
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (GUARD_ADDRESS_SPACE, GUARD_ADDRESS_SPACE))

    done = subprocess.run(
        [sys.executable, "-c", _GUARDED_CHILD, setup, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"guarded child failed ({done.returncode}): {done.stderr[-2000:]}"
    return json.loads(lines[-1])
