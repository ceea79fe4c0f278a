"""Where ``fish-s2 speak`` writes audio: a file (its extension names the format) or standard output (``-o -``:
16-bit WAV, or raw 16-bit PCM with ``--format pcm``), whole or chunk by chunk as it is made."""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

STDOUT = "-"
STREAM_FORMATS = ("wav", "pcm")
UNKNOWN_SIZE = 0xFFFFFFFF
"""RIFF and data sizes of a WAV header written before its length is known (what sox and ffmpeg write to
pipes); readers take the data up to the end of the stream."""


class AudioWriter(Protocol):
    def write(self, audio: np.ndarray) -> None: ...


def to_pcm16(audio: np.ndarray) -> bytes:
    """Little-endian signed 16-bit samples of a float waveform in [-1, 1] (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def wav_header(sampling_rate: int, num_samples: int | None) -> bytes:
    """The 44-byte header of a mono 16-bit PCM WAV; ``num_samples=None`` writes :data:`UNKNOWN_SIZE`s."""
    data = UNKNOWN_SIZE if num_samples is None else 2 * num_samples
    riff = UNKNOWN_SIZE if num_samples is None else 36 + data
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, 1, sampling_rate, 2 * sampling_rate, 2, 16, b"data", data,
    )  # fmt: skip


class PcmStreamWriter:
    """Writes chunks to a binary stream as they come, behind a WAV header of unknown size if ``wav``."""

    def __init__(self, stream: BinaryIO, sampling_rate: int, *, wav: bool):
        self.stream = stream
        if wav:
            stream.write(wav_header(sampling_rate, None))

    def write(self, audio: np.ndarray) -> None:
        self.stream.write(to_pcm16(audio))
        self.stream.flush()


def write_audio(audio: np.ndarray, target: Path, sampling_rate: int, stream_format: str) -> None:
    """One whole waveform to ``target`` (:data:`STDOUT`: a complete WAV or raw PCM on standard output)."""
    if str(target) == STDOUT:
        header = wav_header(sampling_rate, len(audio)) if stream_format == "wav" else b""
        sys.stdout.buffer.write(header + to_pcm16(audio))
        sys.stdout.buffer.flush()
    else:
        from .processing.audio import save_audio

        save_audio(audio, target, sampling_rate)


@contextmanager
def audio_stream(target: Path, sampling_rate: int, stream_format: str) -> Iterator[AudioWriter]:
    """A writer for chunks as they are made: to standard output directly, or to a file under a temporary
    name that is renamed when the block succeeds (a failed run leaves no partial file at ``target``)."""
    if str(target) == STDOUT:
        yield PcmStreamWriter(sys.stdout.buffer, sampling_rate, wav=stream_format == "wav")
        return
    from .processing.audio import audio_writer

    with audio_writer(target, sampling_rate) as sink:
        yield _FileWriter(sink)


class _FileWriter:
    def __init__(self, sink):
        self.sink = sink

    def write(self, audio: np.ndarray) -> None:
        self.sink.write(np.clip(audio, -1.0, 1.0))
        self.sink.flush()
