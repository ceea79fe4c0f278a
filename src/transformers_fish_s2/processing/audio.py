"""Audio in and out: read any file libsndfile reads, mix to mono, resample to the codec's 44.1 kHz,
encode reference voices once, write waveforms in the format the file name asks for.

The reference reads with torchaudio, averages the channels and resamples with a sinc resampler before
``codec.encode``; we do the same with soundfile and soxr (no torchaudio dependency). Encoded
references are cached by content hash because reusing one voice for many requests is the common case
(the reference server caches them too).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

from ..codec.modeling_codec import DECODE_CHUNK_FRAMES
from ..files import atomic_output

logger = logging.getLogger(__name__)

SAMPLING_RATE = 44100
AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
NO_EMPTY_FILES = frozenset({"FLAC", "MP3"})
"""Formats of which libsndfile writes a zero-byte file, no audio file at all, when there are no samples."""
MAX_AUDIO_SECONDS = 600.0
"""Longest audio accepted as input (10 minutes). Reference clips are typically 5-30 s; the codec encodes a clip
in one pass (memory grows with its length) and its frames must fit in the prompt, so a longer input is a
mistake or an attack. Checked from the file header / array length before anything is decoded or resampled."""

MIN_SAMPLING_RATE = 4000
"""Lowest input sample rate accepted (telephone audio is 8 kHz). A WAV header claiming 1 Hz turns 500 samples into
500 s of "audio" whose resampling to 44.1 kHz alone took 74 s."""

AudioSource = str | os.PathLike | bytes | np.ndarray | torch.Tensor


def read_audio(
    source: str | os.PathLike | bytes, *, name: str = "audio", max_seconds: float = MAX_AUDIO_SECONDS
) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC/OGG/MP3 file (a path or its bytes) as float32 ``[channels, samples]`` and its rate.

    Files longer than ``max_seconds`` are refused from their header, before the samples are decoded.
    """
    if isinstance(source, bytes):
        where, handle = "the given bytes", io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: audio file not found: {str(path)!r}")
        where, handle = repr(str(path)), path
    try:
        with soundfile.SoundFile(handle) as audio_file:
            rate = audio_file.samplerate
            _check_length_and_rate(audio_file.frames, rate, max_seconds, f"{name}: audio file {where}")
            data = audio_file.read(dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, TypeError) as error:
        raise ValueError(f"{name}: cannot read audio from {where}: {error}") from None
    if data.shape[0] == 0:
        raise ValueError(f"{name}: audio file {where} contains no samples")
    return np.ascontiguousarray(data.T), int(rate)


def as_mono_float32(audio: np.ndarray | torch.Tensor, *, name: str = "audio") -> np.ndarray:
    """A finite float32 mono waveform ``[samples]`` from ``[samples]`` or ``[channels, samples]`` (either
    orientation: the shorter axis is taken as channels). Integer PCM is scaled to [-1, 1)."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu").numpy() if audio.dtype != torch.bfloat16 else audio.float().numpy()
    audio = np.asarray(audio)
    if not (np.issubdtype(audio.dtype, np.floating) or np.issubdtype(audio.dtype, np.signedinteger)):
        raise TypeError(f"{name} must be a float (or signed integer PCM) waveform, got dtype {audio.dtype}")
    if np.issubdtype(audio.dtype, np.signedinteger):
        audio = audio.astype(np.float64) / float(-np.iinfo(audio.dtype).min)
    if audio.ndim == 2:
        audio = audio.mean(axis=int(np.argmin(audio.shape)))
    if audio.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D [samples] or 2-D [channels, samples], got shape {list(audio.shape)}"
        )
    if audio.shape[0] == 0:
        raise ValueError(f"{name} has no samples")
    if not np.isfinite(audio).all():
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise ValueError(f"{name} contains {bad} NaN or infinite sample(s)")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _check_length_and_rate(samples: int, rate: int, max_seconds: float, what: str) -> None:
    """Refuse, before decoding or resampling, audio longer than ``max_seconds`` or below :data:`MIN_SAMPLING_RATE`."""
    if samples > max_seconds * rate:
        raise ValueError(
            f"{what} is {samples / rate:.1f} s long; audio inputs are limited to max_seconds={max_seconds:g} s "
            "(MAX_AUDIO_SECONDS); use a shorter clip"
        )
    if rate < MIN_SAMPLING_RATE:
        raise ValueError(
            f"{what} has a sample rate of {rate} Hz; audio inputs need at least {MIN_SAMPLING_RATE} Hz "
            "(MIN_SAMPLING_RATE)"
        )


def from_datasets_audio(
    audio: object, sampling_rate: int | None, *, name: str = "audio"
) -> tuple[object, int | None]:
    """``(array, sampling_rate)`` of a ``datasets`` Audio value (``{"array", "sampling_rate"}``, with or without
    ``path``), so such a dict is accepted wherever audio is; any other value is returned unchanged."""
    if not (isinstance(audio, dict) and "array" in audio):
        return audio, sampling_rate
    rate = audio.get("sampling_rate")
    if sampling_rate is not None and rate is not None and sampling_rate != rate:
        raise ValueError(f"{name}: sampling_rate={sampling_rate} was given but the audio dict says {rate} Hz")
    return np.asarray(audio["array"]), sampling_rate if rate is None else rate


def audio_seconds(audio: AudioSource, sampling_rate: int | None = None) -> float | None:
    """Length in seconds of a file (from its header, nothing decoded) or of an array at ``sampling_rate``; ``None``
    when it cannot tell (:func:`load_audio` then says why). Lets a caller compare a clip with its budget before
    paying for decoding, resampling and encoding it."""
    audio, sampling_rate = from_datasets_audio(audio, sampling_rate)
    if isinstance(audio, (str, os.PathLike, bytes)):
        try:
            info = soundfile.info(io.BytesIO(audio) if isinstance(audio, bytes) else os.fspath(audio))
        except (soundfile.SoundFileError, RuntimeError, TypeError, OSError):
            return None
        return info.frames / info.samplerate if info.samplerate > 0 else None
    if (
        isinstance(audio, (np.ndarray, torch.Tensor))
        and audio.ndim in (1, 2)
        and isinstance(sampling_rate, int)
    ):
        return max(audio.shape) / sampling_rate if sampling_rate > 0 else None
    return None


def resample(audio: np.ndarray, rate: int, target_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Resample a mono float32 waveform with soxr (high quality); a no-op at the target rate."""
    if rate == target_rate:
        return audio
    return soxr.resample(audio, rate, target_rate).astype(np.float32, copy=False)


def load_audio(
    audio: AudioSource,
    sampling_rate: int | None = None,
    *,
    target_rate: int = SAMPLING_RATE,
    name: str = "audio",
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> np.ndarray:
    """Any supported audio input as a finite mono float32 waveform at ``target_rate`` (44.1 kHz).

    ``audio`` is a file path, the bytes of a file, an array/tensor, or a ``datasets`` audio dict
    (``{"array", "sampling_rate"}``). Arrays need ``sampling_rate``; for
    files it is read from the file (a ``sampling_rate`` that disagrees is an error). Audio longer than
    ``max_seconds`` is refused before it is decoded or resampled.
    """
    audio, sampling_rate = from_datasets_audio(audio, sampling_rate, name=name)
    if sampling_rate is not None and (isinstance(sampling_rate, bool) or not isinstance(sampling_rate, int)):
        raise TypeError(f"{name}: sampling_rate must be an int (Hz), got {sampling_rate!r}")
    if sampling_rate is not None and sampling_rate <= 0:
        raise ValueError(f"{name}: sampling_rate must be positive, got {sampling_rate}")
    if isinstance(audio, (str, os.PathLike, bytes)):
        data, file_rate = read_audio(audio, name=name, max_seconds=max_seconds)
        if sampling_rate is not None and sampling_rate != file_rate:
            raise ValueError(
                f"{name}: sampling_rate={sampling_rate} was given but the file is at {file_rate} Hz; "
                "leave sampling_rate out for files"
            )
        waveform, rate = as_mono_float32(data, name=name), file_rate
    elif isinstance(audio, (np.ndarray, torch.Tensor)):
        if sampling_rate is None:
            raise ValueError(f"{name}: sampling_rate is required when the audio is an array or tensor")
        waveform, rate = as_mono_float32(audio, name=name), sampling_rate
        _check_length_and_rate(len(waveform), rate, max_seconds, name)
    else:
        raise TypeError(
            f"{name} must be a file path, file bytes, a numpy array or a torch tensor, got {type(audio).__name__}"
        )
    return resample(waveform, rate, target_rate)


def _sound_format(path: Path) -> str:
    file_format = AUDIO_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise ValueError(
            f"cannot tell the audio format from {str(path)!r}; use one of the extensions {sorted(AUDIO_FORMATS)}"
        )
    return file_format


def save_audio(
    audio: np.ndarray | torch.Tensor, path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE
) -> None:
    """Write one waveform; the format (WAV 16-bit, FLAC, OGG Vorbis, MP3) follows the file extension.

    Empty audio (a generation that produced no frames) is written as a valid file of zero samples, with a
    warning (:func:`audio_writer`). The file is written under a temporary name and renamed when complete, so a
    failure leaves no partial file.
    """
    if (audio.numel() if isinstance(audio, torch.Tensor) else np.size(audio)) == 0:
        waveform = np.zeros(0, dtype=np.float32)
    else:
        waveform = as_mono_float32(audio.squeeze() if hasattr(audio, "squeeze") else audio, name="audio")
    with audio_writer(path, sampling_rate) as sink:
        sink.write(np.clip(waveform, -1.0, 1.0))


def save_decoded_audio(codec, codes: torch.Tensor, path: str | os.PathLike) -> int:
    """Decode codes ``[num_codebooks, frames]`` of any length into an audio file with the codec's streaming decoder,
    a bounded chunk at a time, so memory does not grow with the audio (a one-shot decode is capped at
    ``MAX_DECODE_FRAMES``). Written atomically like :func:`save_audio`; returns the number of samples."""
    decoder = codec.streaming_decoder()
    samples = 0
    with audio_writer(path, codec.config.sampling_rate) as sink:
        for chunk in codes.split(DECODE_CHUNK_FRAMES, dim=-1):
            audio = decoder.decode_chunk(chunk[None])[0, 0].to("cpu", torch.float32).numpy()
            sink.write(np.clip(audio, -1.0, 1.0))
            samples += len(audio)
    return samples


@contextmanager
def audio_writer(path: str | os.PathLike, sampling_rate: int) -> Iterator[soundfile.SoundFile]:
    """A mono ``SoundFile`` writing ``path`` (format from the extension) under a temporary name, renamed over
    ``path`` when the block succeeds (:func:`~transformers_fish_s2.files.atomic_output`). A failed write (full
    disk, file size limit, unwritable folder) raises ``OSError`` naming the file, and leaves nothing behind.

    A file that ends with no samples (a generation that made no frames) is kept, as a valid empty file, with a
    warning: the one rule for empty audio, here because every audio file the package writes passes through
    (``save_audio``, ``save_decoded_audio``, the CLI), so a script's next step still finds its file. FLAC and MP3
    cannot hold zero samples (libsndfile writes zero bytes), so there a ``ValueError`` says so and no file is left."""
    path = Path(path)
    file_format = _sound_format(path)
    try:
        with (
            atomic_output(path) as temporary,
            soundfile.SoundFile(
                temporary, "w", samplerate=sampling_rate, channels=1, format=file_format
            ) as sink,
        ):
            yield sink
            if sink.frames == 0 and file_format in NO_EMPTY_FILES:
                raise ValueError(
                    f"the audio for {str(path)!r} has no samples (the model made no frames), and a {file_format} "
                    "file cannot hold zero samples; write .wav or .ogg to keep an empty file"
                )
            if sink.frames == 0:
                logger.warning("the audio for %s has no samples; writing an empty file", str(path))
    except soundfile.SoundFileError as error:
        raise OSError(f"cannot write audio to {str(path)!r}: {error} (is the disk full?)") from error


class ReferenceEncoder:
    """Turns 44.1 kHz reference waveforms into codec codes ``[num_codebooks, T]``, with a bounded LRU
    cache keyed by the waveform's SHA-256 and the codec's dtype and device (which can change the codes).
    The cache is guarded by a lock, so one processor can serve several threads."""

    def __init__(self, codec, max_entries: int = 32):
        self.codec = codec
        self.max_entries = max_entries
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    @torch.no_grad()
    def __call__(self, waveform: np.ndarray) -> torch.Tensor:
        codec = self.codec
        key = f"{hashlib.sha256(waveform.tobytes()).hexdigest()}:{codec.dtype}:{codec.device}"
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        values = torch.from_numpy(waveform)[None, None].to(device=codec.device, dtype=codec.dtype)
        encoded = codec.encode(values)
        codes = encoded.audio_codes[0, :, : int(encoded.audio_code_lengths[0])].to("cpu", torch.long)
        if self.max_entries > 0:
            with self._lock:
                self._cache[key] = codes
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return codes
