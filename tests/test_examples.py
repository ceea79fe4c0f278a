"""Every example in ``examples/`` runs on the tiny fixture (its audio is noise; what is checked is that each
script goes end to end and writes readable 44.1 kHz audio of whole frames), and the Space handler works without
gradio or a browser."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import EXPECTED, TINY

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REFERENCE_WAV = str(EXPECTED / "test_waveform_44k1_pcm16.wav")
TEXT = "Nice to meet you. How are you today?"


def load_example(relative: str):
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_speech(path: Path, max_frames: int) -> None:
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == 44100 and audio.ndim == 1
    assert 0 < len(audio) <= max_frames * 2048 and len(audio) % 2048 == 0


CLONE = ["--reference-audio", REFERENCE_WAV, "--reference-text", "The quick brown fox."]
TWO_VOICES = [
    *("--reference-audio", REFERENCE_WAV, "--reference-text", "I am the first speaker."),
    *("--reference-audio", REFERENCE_WAV, "--reference-text", "And I am the second one."),
]


@pytest.mark.parametrize(
    ("script", "argv", "max_frames"),
    [
        ("quickstart.py", [TEXT, "--max-new-tokens", "4"], 4),
        ("clone_voice.py", [TEXT, *CLONE, "--max-new-tokens", "4"], 4),
        ("dialogue.py", [*TWO_VOICES, "--max-new-tokens", "4", "--chunk-length", "20"], 3 * 4),  # 3 chunks
        (
            "stream_to_wav.py",
            [TEXT, "--max-new-tokens", "4", "--first-chunk-frames", "2", "--chunk-frames", "3"],
            4,
        ),
    ],
)
def test_example_writes_speech(script, argv, max_frames, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    output = load_example(script).main([*argv, "-o", "out.wav", "--model", str(TINY)])
    assert_speech(tmp_path / output, max_frames)
    assert "wrote out.wav" in capsys.readouterr().out


def test_dialogue_example_reports_speakers_tags_and_chunks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    load_example("dialogue.py").main(["--model", str(TINY), "--max-new-tokens", "2", "--chunk-length", "20"])
    out = capsys.readouterr().out
    assert "speakers [0, 1], tags ['whisper', 'laughing', 'sigh', 'short pause'], 3 chunk(s)" in out


def test_batch_example_writes_one_file_per_sentence(tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text(f"{TEXT}\n\nHello! This is a tiny parity test. 你好，世界。\n", encoding="utf-8")
    argv = [str(sentences), "--model", str(TINY), "--output-dir", str(tmp_path / "out"), "--batch-size", "2"]
    paths = load_example("batch_sentences.py").main([*argv, "--max-new-tokens", "4"])
    assert [path.name for path in paths] == ["0000.wav", "0001.wav"]
    for path in paths:
        assert_speech(path, 4)


def test_space_handler_without_gradio(monkeypatch):
    # importing gradio would fail: the handler must not need it
    monkeypatch.setitem(sys.modules, "gradio", None)
    app = load_example("space/app.py")
    rate, audio = app.synthesize(
        TEXT, REFERENCE_WAV, "The quick brown fox.", max_new_tokens=4, seed=0, model=str(TINY)
    )
    assert rate == 44100 and audio.dtype == np.float32 and audio.shape == (4 * 2048,)
    again = app.synthesize(
        TEXT, REFERENCE_WAV, "The quick brown fox.", max_new_tokens=4, seed=0, model=str(TINY)
    )
    np.testing.assert_array_equal(again[1], audio)  # seeded: the same sample again

    samples, file_rate = soundfile.read(REFERENCE_WAV, dtype="float32")
    upload = (file_rate, samples)  # what gr.Audio(type="numpy") passes
    as_upload = app.synthesize(
        TEXT, upload, "The quick brown fox.", max_new_tokens=4, seed=0, model=str(TINY)
    )
    np.testing.assert_allclose(as_upload[1], audio, rtol=0, atol=1e-6)

    with pytest.raises(ValueError, match="Type some text"):
        app.synthesize("  ", model=str(TINY))
    with pytest.raises(ValueError, match="transcript of the reference"):
        app.synthesize(TEXT, REFERENCE_WAV, "", model=str(TINY))
    with pytest.raises(ImportError):
        app.build_demo()
    assert "[whisper]" in app.TAG_HELP and "<|speaker:0|>" in app.TAG_HELP
