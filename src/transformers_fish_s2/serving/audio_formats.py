"""Audio response encoders: a complete file, or a stream of bytes that grows as audio chunks arrive.

Every format goes through libsndfile (``soundfile``). WAV, PCM and FLAC hold the same 16-bit samples: the ones
``soundfile.write`` puts in a 16-bit WAV file for the float waveform. Opus only exists at 8/12/16/24/48 kHz, so it is
resampled to 48 kHz (soxr). MP3 is constant bit rate: a stream then decodes to the right length even though
its header, written before the length is known, is never patched.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

from ..processing.audio import resample

OPUS_RATE = 48000
"""Opus's sample rate (the codec supports no 44.1 kHz)."""


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    container: str | None  # libsndfile major format; None: raw 16-bit samples (pcm)
    subtype: str
    streamable: bool


FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", "audio/wav", "WAV", "PCM_16", True),
    "pcm": AudioFormat("pcm", "audio/pcm", None, "PCM_16", True),
    "flac": AudioFormat("flac", "audio/flac", "FLAC", "PCM_16", False),
    "mp3": AudioFormat("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III", True),
    "opus": AudioFormat("opus", "audio/ogg", "OGG", "OPUS", True),
}
"""Response formats. FLAC is not streamable: its header must carry the total length, which readers rely on."""


def output_rate(audio_format: AudioFormat, sampling_rate: int) -> int:
    """The sample rate of the encoded audio (the model's, except for Opus)."""
    return OPUS_RATE if audio_format.name == "opus" else sampling_rate


def _pcm16(audio: np.ndarray, sampling_rate: int) -> bytes:
    """Raw little-endian 16-bit samples, converted as libsndfile converts for WAV (clipped to [-1, 1] first:
    libsndfile would wrap a louder sample around)."""
    buffer = io.BytesIO()
    soundfile.write(
        buffer, np.clip(audio, -1.0, 1.0), sampling_rate, format="RAW", subtype="PCM_16", endian="LITTLE"
    )
    return buffer.getvalue()


def _sndfile_options(audio_format: AudioFormat) -> dict:
    options = {"format": audio_format.container, "subtype": audio_format.subtype}
    if audio_format.name == "mp3":  # about 170 kbit/s; the level must be set for the mode to hold
        options.update(bitrate_mode="CONSTANT", compression_level=0.5)
    return options


def encode_audio(audio: np.ndarray, sampling_rate: int, audio_format: AudioFormat) -> bytes:
    """A complete file of a mono float32 waveform."""
    if audio_format.container is None:
        return _pcm16(audio, sampling_rate)
    if audio_format.name == "opus":
        audio = np.clip(resample(audio, sampling_rate, OPUS_RATE), -1.0, 1.0)
    elif audio_format.subtype == "PCM_16":  # libsndfile's FLAC rounds differently from its WAV: convert once
        audio = np.frombuffer(_pcm16(audio, sampling_rate), "<i2")
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, output_rate(audio_format, sampling_rate), **_sndfile_options(audio_format))
    return buffer.getvalue()


def streaming_wav_header(sampling_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown" (0xFFFFFFFF), as streamed WAV usually has."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sampling_rate, 2 * sampling_rate, 2, 16)
        + b"data" + struct.pack("<I", unknown)
    )  # fmt: skip


class _GrowingBuffer(io.RawIOBase):
    """A seekable in-memory file for libsndfile; :meth:`take` returns what was appended since the last call.
    Rewrites of bytes already taken (headers patched when the file is closed) cannot reach a stream and are
    dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._data = bytearray()
        self._position = 0
        self._taken = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        end = self._position + len(data)
        if end > len(self._data):
            self._data.extend(bytes(end - len(self._data)))
        self._data[self._position : end] = data
        self._position = end
        return len(data)

    def readinto(self, target) -> int:
        count = max(0, min(len(target), len(self._data) - self._position))
        target[:count] = self._data[self._position : self._position + count]
        self._position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._data)}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        new = bytes(self._data[self._taken :])
        self._taken = len(self._data)
        return new


class AudioStreamEncoder:
    """Encodes audio chunk by chunk: :meth:`feed` and :meth:`finish` return the bytes to send next.

    WAV is a header with unknown sizes followed by 16-bit samples; PCM the samples alone; MP3 and Opus come
    out of libsndfile as it flushes frames (Ogg pages of Opus hold about a second of audio each).
    """

    def __init__(self, audio_format: AudioFormat, sampling_rate: int) -> None:
        if not audio_format.streamable:
            raise ValueError(f"{audio_format.name} cannot be streamed")
        self.format = audio_format
        self.sampling_rate = sampling_rate
        self._header = streaming_wav_header(sampling_rate) if audio_format.name == "wav" else b""
        self._buffer: _GrowingBuffer | None = None
        self._file: soundfile.SoundFile | None = None
        self._resampler: soxr.ResampleStream | None = None
        if audio_format.container is not None and audio_format.name != "wav":
            self._buffer = _GrowingBuffer()
            self._file = soundfile.SoundFile(
                self._buffer,
                "w",
                samplerate=output_rate(audio_format, sampling_rate),
                channels=1,
                **_sndfile_options(audio_format),
            )
            if audio_format.name == "opus":
                self._resampler = soxr.ResampleStream(sampling_rate, OPUS_RATE, 1, dtype="float32")

    def feed(self, chunk: np.ndarray) -> bytes:
        header, self._header = self._header, b""
        if self._file is None:
            return header + _pcm16(chunk, self.sampling_rate)
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk)
        self._file.write(np.clip(chunk, -1.0, 1.0))
        return self._buffer.take()

    def finish(self) -> bytes:
        """The last bytes (buffered frames, the end of the stream); also for a stream that got no audio."""
        header, self._header = self._header, b""
        if self._file is None:
            return header
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self._file.write(np.clip(tail, -1.0, 1.0))
        self._file.close()
        return self._buffer.take()

    def close(self) -> None:
        """Release libsndfile's handle of an abandoned stream."""
        if self._file is not None and not self._file.closed:
            self._file.close()
