"""Ctrl-C and SIGTERM during `fish-s2 speak --stream`: exit 130 / 143, no file left, no abort.

The CLI runs as a real subprocess (it inherits PYTHONPATH); the signal is sent once the first audio chunk is in
the hidden .partial file, i.e. while the generation thread is inside torch. Before the fix, Ctrl-C aborted the
process (SIGABRT, "terminate called without an active exception") and SIGTERM left the .partial file behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY

TEXT = "Nice to meet you. How are you today? This is a longer sentence to speak."
FIRST_CHUNK_BYTES = 44 + 5 * 2048 * 2  # WAV header + the first 5 frames of 16-bit audio


def partial_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial"))


def default_sigint() -> None:
    """In the child: SIGINT's default action, as in a terminal. A test run started in the background
    (``nohup … &``) passes SIGINT on ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_first_chunk(process: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"fish-s2 ended before streaming: {process.communicate()[1][-2000:]}"
        if any(path.stat().st_size >= FIRST_CHUNK_BYTES for path in partial_files(folder) if path.exists()):
            return
        time.sleep(0.01)
    raise AssertionError("no audio was streamed in time")


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_stream_ends_cleanly_and_leaves_nothing(tmp_path, signum, status):
    output = tmp_path / "out.wav"
    command = [sys.executable, "-m", "transformers_fish_s2.cli", "speak", TEXT, "-o", str(output), "--stream",
               "--model", str(TINY), "--device", "cpu", "--dtype", "float32", "--greedy", "--max-new-tokens", "400"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=default_sigint,
    )  # fmt: skip
    try:
        wait_for_first_chunk(process, tmp_path)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == status, stderr[-2000:]
    assert "terminate called" not in stderr and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == ("fish-s2: interrupted" if status == 130 else "fish-s2: terminated")
    assert not output.exists() and partial_files(tmp_path) == []
