"""Budgets checked before allocation: model bytes, the RAS window, frames per decode call, reference length.

Each blow-up case runs in a guarded child process (conftest.guarded_calls) and must fail with our message in
under 5 s with its peak RSS growing less than 300 MB, where the unguarded code allocated gigabytes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY, guarded_calls

from transformers_fish_s2 import FishS2CodecModel, FishS2ForConditionalGeneration, FishS2Processor
from transformers_fish_s2.cli import main, write_codes_file
from transformers_fish_s2.codec import modeling_codec
from transformers_fish_s2.config_checks import MAX_MODEL_BYTES
from transformers_fish_s2.processing import audio as audio_io

MAX_GROWTH_MB, MAX_SECONDS = 300, 5
SETUP = f"""
import numpy as np
from transformers_fish_s2 import FishS2CodecModel, FishS2ForConditionalGeneration, FishS2Processor
processor = FishS2Processor.from_pretrained({str(TINY)!r})
model = FishS2ForConditionalGeneration.from_pretrained({str(TINY)!r}, dtype=torch.float32)
prompt = processor("Hello there.")
"""


def tiny_copy(directory: Path) -> Path:
    shutil.copytree(TINY, directory, ignore=shutil.ignore_patterns("expected"))
    return directory


def long_wav(path: Path, samples: int, rate: int) -> str:
    soundfile.write(path, np.zeros(samples, np.float32), rate, format="WAV", subtype="PCM_16")
    return str(path)


def test_blow_up_cases_fail_fast_and_cheaply(tmp_path):
    huge_vocabulary = tiny_copy(tmp_path / "vocab")
    config = json.loads((huge_vocabulary / "config.json").read_text())
    config["text_config"]["vocab_size"] = 10**9  # under MAX_PARAMETERS, but 128 GB of bfloat16
    (huge_vocabulary / "config.json").write_text(json.dumps(config))
    one_hertz = long_wav(tmp_path / "one-hertz.wav", 500, 1)  # 1 KB on disk, 500 s of "audio"
    thirty_seconds = long_wav(tmp_path / "thirty-seconds.wav", 30 * 44100, 44100)  # the context holds 23.7 s
    frames = 200_000
    cases = {
        "vocab_size=10^9": (
            f"FishS2ForConditionalGeneration.from_pretrained({str(huge_vocabulary)!r})",
            r"FishS2ForConditionalGeneration would allocate 128.0 GB of weights .* the limit is 40.0 GB "
            r"\(max_model_bytes, default MAX_MODEL_BYTES = 40 GB\)",
        ),
        "ras_window_size=10^9": (
            "model.generate(**prompt, max_new_tokens=2, ras_window_size=10**9)",
            r"ras_window_size must be an integer in \[0, 1024\] \(MAX_RAS_WINDOW_SIZE\), got 1000000000",
        ),
        "codec.decode of 200,000 frames": (
            f"processor.codec.decode(torch.zeros(1, 10, {frames}, dtype=torch.long))",
            rf"audio_codes has {frames} frames; one decode call takes at most 16384 \(MAX_DECODE_FRAMES\)",
        ),
        "processor.decode of 200,000 frames": (
            f"processor.decode(torch.zeros(10, {frames}, dtype=torch.long))",
            r"one decode call takes at most 16384 .*codec.streaming_decoder\(\)",
        ),
        "a 1 KB WAV whose header says 1 Hz, as a reference": (
            f"processor('Hi.', references=[{{'text': 'Hello.', 'audio': {one_hertz!r}}}])",
            r"references\[0\]\['audio'\] is 500.0 s long; .* 10767 audio frames, but the model context is 512 tokens "
            r"\(max_length\): the references together must be shorter than 23.7 s",
        ),
        "30 s reference for a 23.7 s context": (
            f"processor('Hi.', references=[{{'text': 'Hello.', 'audio': {thirty_seconds!r}}}])",
            r"references\[0\]\['audio'\] is 30.0 s long; .* must be shorter than 23.7 s",
        ),
        "a 500 s array at 1 Hz, as a reference": (
            "processor('Hi.', references=[{'text': 'Hello.', 'audio': np.zeros(500, np.float32), 'sampling_rate': 1}])",
            r"references\[0\]\['audio'\] is 500.0 s long",
        ),
    }
    outcomes = guarded_calls({name: case for name, (case, _) in cases.items()}, SETUP)
    for name, (_, match) in cases.items():
        outcome = outcomes[name]
        assert outcome["error"] is not None and re.search(match, outcome["error"]), (name, outcome["error"])
        assert outcome["seconds"] < MAX_SECONDS, (name, outcome)
        assert outcome["rss_growth_mb"] < MAX_GROWTH_MB, (name, outcome)


def test_max_model_bytes_is_counted_in_the_loading_dtype_and_can_be_raised():
    bf16_bytes = FishS2ForConditionalGeneration.config_class.from_pretrained(TINY).num_parameters * 2
    with pytest.raises(ValueError, match=r"would allocate .* the limit is 0.0 GB"):
        FishS2ForConditionalGeneration.from_pretrained(TINY, max_model_bytes=bf16_bytes - 1)  # "auto": the bf16 of config.json
    FishS2ForConditionalGeneration.from_pretrained(TINY, max_model_bytes=bf16_bytes)
    with pytest.raises(ValueError, match=r"x 4 bytes\)"):
        FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32, max_model_bytes=bf16_bytes)
    with pytest.raises(ValueError, match=r"FishS2CodecModel would allocate"):
        FishS2CodecModel.from_pretrained(TINY, max_model_bytes=1000)
    with pytest.raises(ValueError, match=r"max_model_bytes must be a positive integer, got '1GB'"):
        FishS2ForConditionalGeneration.from_pretrained(TINY, max_model_bytes="1GB")
    assert MAX_MODEL_BYTES > 2 * 18.3e9  # s2-pro in float32 loads under the default


def test_long_decodes_run_chunk_by_chunk_and_match_one_pass(monkeypatch):
    codec = FishS2CodecModel.from_pretrained(TINY)
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 32, (1, 10, 300), generator=generator)
    one_pass = codec.decoder(codec.quantizer.decode(codes))
    chunked = codec.decode(codes).audio_values  # 300 frames > DECODE_CHUNK_FRAMES = 256
    torch.testing.assert_close(chunked, one_pass, rtol=0, atol=1e-5)
    monkeypatch.setattr(modeling_codec, "MAX_DECODE_FRAMES", 100)
    with pytest.raises(ValueError, match=r"audio_codes has 300 frames; one decode call takes at most 100"):
        codec.decode(codes)


def test_cli_decodes_audio_longer_than_one_decode_call_in_chunks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(modeling_codec, "MAX_DECODE_FRAMES", 100)  # stands in for 16384 at a tiny cost
    monkeypatch.setattr(audio_io, "DECODE_CHUNK_FRAMES", 64)
    codes = torch.randint(0, 32, (10, 300), generator=torch.Generator().manual_seed(1))
    codes_file, wav = tmp_path / "long.codes.safetensors", tmp_path / "long.wav"
    write_codes_file(codes_file, codes, sampling_rate=44100)
    assert main(["decode", str(codes_file), "-o", str(wav), "--model", str(TINY), "--device", "cpu"]) == 0
    assert "300 frames" in capsys.readouterr().err
    audio, rate = soundfile.read(wav, dtype="float32")
    codec = FishS2CodecModel.from_pretrained(TINY)
    with torch.no_grad():
        expected = codec.decoder(codec.quantizer.decode(codes[None]))[0, 0].numpy()
    assert rate == 44100 and audio.shape == (300 * 2048,)
    np.testing.assert_allclose(audio, np.clip(expected, -1, 1), rtol=0, atol=2 / 2**15)  # 16-bit WAV rounding


def test_audio_below_the_minimum_sample_rate_is_refused_before_resampling(tmp_path, capsys):
    path = long_wav(tmp_path / "one-hertz.wav", 500, 1)
    output = tmp_path / "voice.codes.safetensors"
    assert main(["encode", path, "-o", str(output), "--model", str(TINY), "--device", "cpu"]) == 1
    assert re.search(r"has a sample rate of 1 Hz; audio inputs need at least 4000 Hz", capsys.readouterr().err)
    assert not output.exists()


def test_references_that_fit_the_context_are_still_encoded():
    processor = FishS2Processor.from_pretrained(TINY)
    reference = {"text": "The quick brown fox.", "audio": str(EXPECTED / "test_waveform_44k1_pcm16.wav")}
    assert processor("Hi.", references=[reference])["input_ids"].shape[1] < 512
