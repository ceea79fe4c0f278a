"""transformers habits that hold for Fish S2: a plain greedy GenerationConfig raises no warning about flags
the user never set, the audio rate is on ``model.config``, empty audio is written the same way everywhere,
``batch_decode`` takes generate's output, and reference audio comes as ``audio=``/``sampling_rate=`` or as
``datasets`` audio dicts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED
from transformers import GenerationConfig

from transformers_fish_s2.modeling.generation_options import FishS2GenerationConfig

REFERENCE_WAV = EXPECTED / "test_waveform_44k1_pcm16.wav"
REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog."


def test_a_plain_greedy_generation_config_warns_about_nothing(model, processor, caplog):
    inputs = processor("Nice to meet you.")
    with caplog.at_level(logging.WARNING):
        greedy = model.generate(
            **inputs, generation_config=GenerationConfig(do_sample=False), max_new_tokens=4
        )
        also_greedy = model.generate(**inputs, do_sample=False, max_new_tokens=4)
    assert not [record for record in caplog.records if "generation flags" in record.getMessage()]
    torch.testing.assert_close(greedy.sequences, also_greedy.sequences)
    assert FishS2GenerationConfig(do_sample=False).temperature is None  # nothing the user did not set
    assert FishS2GenerationConfig().temperature == 0.8  # sampling keeps the shipped defaults


def test_the_sampling_rate_is_on_the_model_config(model, processor):
    assert (
        model.config.sampling_rate == processor.codec.config.sampling_rate == processor.sampling_rate == 44100
    )


def test_empty_audio_is_an_empty_file_with_a_warning(processor, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        processor.save_audio(np.zeros(0, np.float32), tmp_path / "empty.wav")
        processor.save_audio(torch.zeros(1, 0), tmp_path / "empty2.wav")
    assert (
        soundfile.info(tmp_path / "empty.wav").frames == 0
        and soundfile.info(tmp_path / "empty2.wav").frames == 0
    )
    assert (
        sum("has no samples; writing an empty file" in record.getMessage() for record in caplog.records) == 2
    )


def test_batch_decode_takes_what_generate_returns_and_output_audio_says_how(model, processor):
    output = model.generate(**processor(["Nice to meet you.", "Hello!"]), do_sample=False, max_new_tokens=4)
    waveforms = processor.batch_decode(output)
    assert [len(w) for w in waveforms] == [int(n) * 2048 for n in output.lengths]
    torch.testing.assert_close(
        waveforms[0], processor.decode(output.sequences[0, :, : int(output.lengths[0])])
    )
    with pytest.raises(TypeError, match=r"returns codes, not audio .*processor.batch_decode\(output\)"):
        model.generate(**processor("Hi."), output_audio=True)


def test_the_processor_takes_audio_sampling_rate_and_datasets_dicts(processor):
    waveform, rate = soundfile.read(REFERENCE_WAV, dtype="float32")
    as_references = processor("Hi.", references=[{"text": REFERENCE_TEXT, "audio": str(REFERENCE_WAV)}])
    forms = [
        processor(text="Hi.", audio=waveform, sampling_rate=rate, reference_text=REFERENCE_TEXT),
        processor(text="Hi.", audio=[{"array": waveform, "sampling_rate": rate}], reference_text=[REFERENCE_TEXT]),
        processor("Hi.", references=[{"text": REFERENCE_TEXT, "audio": {"array": waveform, "sampling_rate": rate, "path": None}}]),
    ]  # fmt: skip
    for inputs in forms:
        torch.testing.assert_close(inputs["input_ids"], as_references["input_ids"])
        torch.testing.assert_close(inputs["audio_codes"], as_references["audio_codes"])
    with pytest.raises(ValueError, match="one transcript per audio clip: got 0 transcript"):
        processor("Hi.", audio=waveform, sampling_rate=rate)
    with pytest.raises(ValueError, match="either as references= or as audio="):
        processor("Hi.", references=[], audio=waveform, reference_text="x")
