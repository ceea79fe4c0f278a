"""transformers habits that hold for Fish S2: a plain greedy GenerationConfig raises no warning about flags
the user never set, the audio rate is on ``model.config``, empty audio is handled the same way everywhere,
``batch_decode`` takes generate's output, and reference audio comes as ``audio=``/``sampling_rate=`` or as
``datasets`` audio dicts."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY
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


def empty_file_warnings(caplog) -> int:
    return sum("has no samples; writing an empty file" in record.getMessage() for record in caplog.records)


def test_empty_audio_is_an_empty_file_with_a_warning(processor, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        processor.save_audio(np.zeros(0, np.float32), tmp_path / "empty.wav")
        processor.save_audio(torch.zeros(1, 0), tmp_path / "empty2.wav")
        assert (
            processor.save_decoded_audio(torch.zeros(10, 0, dtype=torch.long), tmp_path / "empty3.ogg") == 0
        )
    for name in ("empty.wav", "empty2.wav", "empty3.ogg"):
        assert soundfile.info(tmp_path / name).frames == 0
    assert empty_file_warnings(caplog) == 3
    for suffix in (".flac", ".mp3"):  # libsndfile would write zero bytes: no audio file at all
        with pytest.raises(
            ValueError, match=rf"has no samples .*a {suffix[1:].upper()} file cannot hold zero"
        ):
            processor.save_audio(np.zeros(0, np.float32), tmp_path / f"empty{suffix}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.wav", "empty2.wav", "empty3.ogg"]


def test_a_generation_without_frames_is_handled_the_same_everywhere(tmp_path, monkeypatch, caplog, capsys):
    """The tiny model ends "Short one." before its first frame when greedy (every generate call here is made
    greedy). Arrays come back with zero samples (decode, the pipeline, the Space); files are written with zero
    samples and one warning each (the CLI, whether to a file or streamed to one, and the batch example, which used
    to skip the file)."""
    from test_examples import load_example
    from transformers import pipeline

    from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor
    from transformers_fish_s2.cli import main

    text = "Short one."
    generate = FishS2ForConditionalGeneration.generate

    def greedy(self, *args, **kwargs):
        return generate(self, *args, **{**kwargs, "do_sample": False})

    monkeypatch.setattr(FishS2ForConditionalGeneration, "generate", greedy)
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()
    processor = FishS2Processor.from_pretrained(TINY)
    output = model.generate(**processor(text), max_new_tokens=2)
    assert output.lengths.tolist() == [0] and processor.decode(output).shape == (0,)
    out = pipeline("text-to-speech", model=model, processor=processor)(
        text, generate_kwargs={"max_new_tokens": 2}
    )
    assert out["audio"].shape == (0,) and out["audio"].dtype == np.float32

    model_args = ["--model", str(TINY), "--device", "cpu", "--max-new-tokens", "2"]
    sentences = tmp_path / "sentences.txt"
    sentences.write_text(f"{text}\n{text}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        for i, extra in enumerate(([], ["--stream"])):
            assert main(["speak", text, *model_args, "-o", str(tmp_path / f"cli{i}.wav"), *extra]) == 0
            assert soundfile.info(tmp_path / f"cli{i}.wav").frames == 0
        paths = load_example("batch_sentences.py").main(
            [
                str(sentences),
                *model_args[:2],
                "--output-dir",
                str(tmp_path / "batch"),
                "--max-new-tokens",
                "2",
            ]
        )
    assert len(paths) == 2 and all(soundfile.info(path).frames == 0 for path in paths)
    assert empty_file_warnings(caplog) == 2 + 2
    assert "produced no audio frames" not in capsys.readouterr().err  # said once, by the writer

    monkeypatch.setitem(sys.modules, "gradio", None)
    rate, audio = load_example("space/app.py").synthesize(text, max_new_tokens=2, model=str(TINY))
    assert rate == 44100 and audio.dtype == np.float32 and audio.shape == (0,)


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
