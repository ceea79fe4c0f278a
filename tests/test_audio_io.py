"""Audio reading, mono mixing, resampling, writing and the encoded-reference cache (processing/audio.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile
import torch

from transformers_fish_s2.processing import audio as audio_io

RATE = 44100


def tone(seconds: float = 0.25, rate: int = RATE, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("extension", "file_format", "tolerance"),
    [(".wav", "WAV", 1 / 32768), (".flac", "FLAC", 1 / 32768), (".ogg", "OGG", None), (".mp3", "MP3", None)],
)
def test_save_picks_the_format_from_the_extension_and_reads_back(tmp_path, extension, file_format, tolerance):
    wave = tone()
    path = tmp_path / f"voice{extension.upper()}"  # case-insensitive extension
    audio_io.save_audio(torch.from_numpy(wave)[None], path)  # [1, L] tensors are accepted
    assert soundfile.info(str(path)).format == file_format
    data, rate = audio_io.read_audio(path)
    assert rate == RATE and data.shape[0] == 1 and data.dtype == np.float32
    if tolerance is not None:  # lossless: PCM-16 quantisation only
        np.testing.assert_allclose(data[0], wave, atol=tolerance)
    else:  # lossy codecs: same length within the encoder's padding, same signal energy within 10 %
        assert abs(data.shape[1] - len(wave)) < 0.1 * RATE
        assert np.sqrt(np.mean(data**2)) == pytest.approx(np.sqrt(np.mean(wave**2)), rel=0.1)


def test_save_rejects_an_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=re.escape("cannot tell the audio format from") + ".*voice.aac"):
        audio_io.save_audio(tone(), tmp_path / "voice.aac")
    assert not (tmp_path / "voice.aac").exists()


def test_mono_mixing_averages_channels_in_either_orientation():
    left, right = tone(), tone(frequency=220.0)
    expected = (left + right) / 2
    np.testing.assert_allclose(audio_io.as_mono_float32(np.stack([left, right])), expected, atol=1e-7)
    np.testing.assert_allclose(audio_io.as_mono_float32(np.stack([left, right], 1)), expected, atol=1e-7)
    np.testing.assert_allclose(
        audio_io.as_mono_float32(torch.from_numpy(np.stack([left, right]))), expected, atol=1e-7
    )


def test_integer_pcm_is_scaled_and_bfloat16_is_accepted():
    pcm = np.array([-32768, 0, 16384], dtype=np.int16)
    np.testing.assert_array_equal(audio_io.as_mono_float32(pcm), [-1.0, 0.0, 0.5])
    assert audio_io.as_mono_float32(torch.ones(4, dtype=torch.bfloat16)).dtype == np.float32


@pytest.mark.parametrize(
    ("audio", "error", "message"),
    [
        (
            np.array([0.1, np.nan, np.inf, 0.2], dtype=np.float32),
            ValueError,
            "ref contains 2 NaN or infinite sample(s)",
        ),
        (torch.tensor([[0.0, -float("inf")]]), ValueError, "ref contains 1 NaN or infinite sample(s)"),
        (np.zeros(0, dtype=np.float32), ValueError, "ref has no samples"),
        (
            np.zeros((2, 3, 4), dtype=np.float32),
            ValueError,
            "ref must be 1-D [samples] or 2-D [channels, samples]",
        ),
        (
            np.zeros(4, dtype=np.uint8),
            TypeError,
            "ref must be a float (or signed integer PCM) waveform, got dtype uint8",
        ),
        (np.zeros(4, dtype=bool), TypeError, "got dtype bool"),
    ],
)
def test_bad_waveforms_are_rejected(audio, error, message):
    with pytest.raises(error, match=re.escape(message)):
        audio_io.as_mono_float32(audio, name="ref")


def test_load_audio_resamples_files_bytes_and_arrays_to_44k1(tmp_path):
    wave16k = tone(rate=16000)
    path = tmp_path / "v.flac"
    soundfile.write(path, wave16k, 16000)
    from_file = audio_io.load_audio(path)
    from_bytes = audio_io.load_audio(path.read_bytes())
    from_array = audio_io.load_audio(wave16k, 16000)
    assert len(from_file) == round(len(wave16k) * RATE / 16000)
    np.testing.assert_allclose(from_file, from_array, atol=2 / 32768)
    np.testing.assert_array_equal(from_file, from_bytes)
    # A 44.1 kHz array passes through untouched.
    wave = tone()
    np.testing.assert_array_equal(audio_io.load_audio(wave, RATE), wave)


def test_load_audio_errors_name_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match=re.escape(f"r: audio file not found: '{missing}'")):
        audio_io.load_audio(missing, name="r")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match=re.escape(f"r: cannot read audio from '{garbage}'")):
        audio_io.load_audio(garbage, name="r")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match=re.escape(f"r: audio file '{empty}' contains no samples")):
        audio_io.load_audio(empty, name="r")
    with pytest.raises(ValueError, match=re.escape("r: cannot read audio from the given bytes")):
        audio_io.load_audio(b"RIFF....", name="r")


def test_load_audio_sampling_rate_rules(tmp_path):
    path = tmp_path / "v.wav"
    soundfile.write(path, tone(), RATE)
    with pytest.raises(ValueError, match="sampling_rate is required when the audio is an array"):
        audio_io.load_audio(tone())
    with pytest.raises(ValueError, match="sampling_rate=16000 was given but the file is at 44100 Hz"):
        audio_io.load_audio(path, 16000)
    with pytest.raises(TypeError, match="sampling_rate must be an int"):
        audio_io.load_audio(tone(), 44100.0)
    with pytest.raises(ValueError, match="sampling_rate must be positive"):
        audio_io.load_audio(tone(), 0)
    with pytest.raises(
        TypeError, match="must be a file path, file bytes, a numpy array or a torch tensor, got list"
    ):
        audio_io.load_audio([0.0, 0.1], RATE)


class CountingCodec:
    """Stands in for the codec: records calls; codes depend on the waveform so cache mix-ups would show."""

    def __init__(self):
        self.calls = 0
        self.dtype = torch.float32
        self.device = torch.device("cpu")

    def encode(self, values):
        self.calls += 1
        frames = -(-values.shape[-1] // 2048)
        level = int(values.abs().sum() * 1000) % 64
        codes = torch.full((1, 10, frames), level, dtype=torch.long)
        return type("Out", (), {"audio_codes": codes, "audio_code_lengths": torch.tensor([frames])})


def test_reference_encoder_caches_by_content_and_is_bounded():
    codec = CountingCodec()
    encoder = audio_io.ReferenceEncoder(codec, max_entries=2)
    a, b, c = tone(), tone(frequency=300.0), tone(frequency=500.0)
    first = encoder(a)
    assert torch.equal(encoder(a.copy()), first) and codec.calls == 1  # same content, other buffer: cached
    encoder(b)
    encoder(a)  # refreshes a
    encoder(c)  # evicts b, the least recently used
    assert len(encoder) == 2 and codec.calls == 3
    encoder(a)
    assert codec.calls == 3
    encoder(b)
    assert codec.calls == 4
    codec.dtype = torch.bfloat16  # another precision or device can give other codes: not a cache hit
    encoder(a)
    codec.device = torch.device("cpu", 0)
    encoder(a)
    assert codec.calls == 6
