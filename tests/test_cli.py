"""The ``fish-s2`` command on the tiny fixture: speak / encode / decode / memory / eval in-process, the console
script itself in two subprocesses (streaming from stdin, the offline error for a repo id), and user mistakes
ending in one line and exit status 1 or 2 instead of a stack trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY, expected_tensors

from transformers_fish_s2.cli import main, read_codes_file
from transformers_fish_s2.hub import HubAccessError

TEXT = "Nice to meet you. How are you today?"  # the tiny model uses all 12 frames of the budget for it
REFERENCE_WAV = EXPECTED / "test_waveform_44k1_pcm16.wav"
REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog."
MODEL = ["--model", str(TINY), "--device", "cpu"]
GREEDY = ["--greedy", "--max-new-tokens", "12", "--dtype", "float32"]


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("fish-s2")
    return [str(script)] if script.exists() else [sys.executable, "-m", "transformers_fish_s2.cli"]


def read_wav(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == 44100 and audio.ndim == 1
    return audio


def run_console_script(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        console_script() + args,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_console_script_streams_and_explains_an_unreachable_repo(tmp_path):
    # Two processes side by side (each pays the ~9 s import): streaming from stdin, and the default repo offline.
    streaming = run_console_script(
        ["speak", "-", "--stream", "-o", "streamed.wav", *MODEL, *GREEDY], tmp_path
    )
    offline = run_console_script(["speak", "Hello", "-o", "hello.wav"], tmp_path)
    _, streaming_err = streaming.communicate(TEXT, timeout=300)
    _, offline_err = offline.communicate("", timeout=300)

    assert streaming.returncode == 0, streaming_err
    assert "wrote streamed.wav: 0.56 s of audio (12 frames)" in streaming_err
    assert main(["speak", TEXT, "-o", str(tmp_path / "whole.wav"), *MODEL, *GREEDY]) == 0
    streamed, whole = read_wav(tmp_path / "streamed.wav"), read_wav(tmp_path / "whole.wav")
    assert streamed.shape == whole.shape == (12 * 2048,)
    # chunked streaming decode equals the full decode to ~1e-5, i.e. at most one 16-bit step in the file
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1.01 / 32768)

    assert offline.returncode == 1
    assert "Traceback" not in offline_err
    assert "fish-s2 speak: error: cannot load 'fishaudio/s2-pro': offline mode is on" in offline_err
    assert (
        "hf download fishaudio/s2-pro --local-dir ./s2-pro" in offline_err
        and "--model ./s2-pro" in offline_err
    )
    assert not (tmp_path / "hello.wav").exists()


def test_speak_saves_codes_that_decode_to_the_same_audio(tmp_path, capsys):
    speech, codes_file, decoded = (
        tmp_path / "speech.wav",
        tmp_path / "speech.codes.safetensors",
        tmp_path / "d.wav",
    )
    argv = ["speak", TEXT, "-o", str(speech), "--save-codes", str(codes_file), "--progress", *MODEL, *GREEDY]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "speaking (1 chunk)" in err and "12 frames" in err
    codes, text = read_codes_file(codes_file)
    assert codes.shape == (10, 12) and text == TEXT

    assert main(["decode", str(codes_file), "-o", str(decoded), *MODEL]) == 0
    np.testing.assert_array_equal(read_wav(decoded), read_wav(speech))
    assert read_wav(speech).shape == (12 * 2048,)


def test_encoded_reference_gives_the_same_voice_as_the_audio_file(tmp_path, capsys):
    codes_file = tmp_path / "ref.codes.safetensors"
    argv = ["encode", str(REFERENCE_WAV), "--text", REFERENCE_TEXT, "-o", str(codes_file), *MODEL]
    assert main(argv) == 0
    codes, text = read_codes_file(codes_file)
    torch.testing.assert_close(codes, expected_tensors("codec")["codes"], rtol=0, atol=0)
    assert text == REFERENCE_TEXT

    from_audio, from_codes = tmp_path / "from_audio.wav", tmp_path / "from_codes.wav"
    dialogue = "<|speaker:0|>[whisper] Did you hear that? <|speaker:1|>[laughing] It was only the wind!"
    common = ["--chunk-length", "10", "--max-new-tokens", "6", "--greedy", "--progress", *MODEL]
    assert main(["speak", dialogue, "-o", str(from_audio), "--reference-audio", str(REFERENCE_WAV),
                 "--reference-text", REFERENCE_TEXT, *common]) == 0  # fmt: skip
    assert (
        main(["speak", dialogue, "-o", str(from_codes), "--reference-audio", str(codes_file), *common]) == 0
    )
    assert "speaking (2 chunks)" in capsys.readouterr().err  # one chunk per speaker turn at 10 bytes
    np.testing.assert_array_equal(read_wav(from_codes), read_wav(from_audio))
    assert len(read_wav(from_audio)) > 6 * 2048  # both chunks contributed frames


def test_memory_and_eval_subcommands(capsys):
    assert main(["memory", "--model", str(TINY), "--quantization", "none", "--quantization", "int8"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| compute dtype | quantization |")
    assert len(table) == 4 and "| bfloat16 | none |" in table[2] and "int8" in table[3]
    assert main(["memory", "--model", str(TINY)]) == 0
    assert "slow AR weights" in capsys.readouterr().out

    assert main(["eval", "--help"]) == 0  # handed to the evaluation runner
    assert "--meta" in capsys.readouterr().out


@pytest.fixture
def not_codes(tmp_path) -> Path:
    path = tmp_path / "notes.safetensors"
    path.write_text("not a safetensors file")
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["speak"], "give the text to speak either as an argument"),
        (["speak", "   "], "the text to speak is empty"),
        (["speak", "hi", "--text-file", "story.txt"], "give the text to speak either"),
        (["speak", "--text-file", "missing.txt"], "--text-file not found: 'missing.txt'"),
        (["speak", "hi", "-o", "speech.txt"], "use one of the extensions .wav, .flac, .ogg, .mp3"),
        (["speak", "hi", "-o", "no/such/folder/x.wav"], "folder 'no/such/folder' does not exist"),
        (["speak", "hi", "--reference-audio", "missing.wav"], "--reference-audio not found: 'missing.wav'"),
        (
            ["speak", "hi", "--reference-audio", str(REFERENCE_WAV)],
            "got 1 --reference-audio and 0 --reference-text",
        ),
        (["speak", "hi", "--greedy", "--temperature", "0.5"], "cannot be combined with ['temperature']"),
        (["speak", "hi", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
        (["speak", "hi", "--save-codes", "codes.npy"], "codes files end in .safetensors"),
        (
            ["speak", "hi", "--model", "./no-such-checkpoint"],
            "'./no-such-checkpoint' is not an existing folder",
        ),
        (["speak", "hi", *MODEL, "--temperature", "0"], "temperature must be > 0"),
        (["decode", "missing.codes.safetensors"], "codes file not found"),
        (["decode", "NOT_CODES"], "is not a safetensors codes file"),
        (["encode", "missing.wav", *MODEL], "audio file not found: 'missing.wav'"),
    ],
)
def test_user_mistakes_end_with_one_line_and_status_1(
    argv, message, not_codes, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = [str(not_codes) if arg == "NOT_CODES" else arg for arg in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"fish-s2 {argv[0]}: error: ")  # one line (after any loading bar)


def test_malformed_command_lines_exit_2_and_traceback_flag_reraises(capsys, monkeypatch, tmp_path):
    assert main(["speak", "hi", "--quantization", "9bit"]) == 2
    assert "invalid choice: '9bit'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(command in usage for command in ("speak", "encode", "decode", "memory", "eval"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubAccessError, match="not an existing folder"):
        main(["--traceback", "speak", "hi", "--model", "./no-such-checkpoint"])


# ---------------------------------------------------------------------------------------------------------
# one-line errors for broken checkpoints, closed stdin and full disks
# ---------------------------------------------------------------------------------------------------------


def broken_copy(folder: Path, breakage: str) -> Path:
    import json
    import shutil

    shutil.copytree(TINY, folder, ignore=shutil.ignore_patterns("expected"))
    if breakage == "{} as tokenizer.json":
        (folder / "tokenizer.json").write_text("{}")
    elif breakage == "codec.pth with integer tensors":
        state = torch.load(folder / "codec.pth", weights_only=True)
        torch.save({key: value.long() for key, value in state.items()}, folder / "codec.pth")
    elif breakage == "list-valued eos_token_id":
        config = json.loads((folder / "config.json").read_text())
        config["eos_token_id"] = [5, 6]
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("{} as tokenizer.json", r"cannot load FishS2Processor from .*: tokenizer.json: Model missing"),
        ("codec.pth with integer tensors", r"codec.pth stores \d+ weight\(s\) with a non-floating dtype: .* and \d+ more\. Weights are"),
        ("list-valued eos_token_id", r"eos_token_id must be one integer token id in the text vocabulary \[0, 512\), got \[5, 6\]"),
    ],
)  # fmt: skip
def test_broken_checkpoints_end_in_one_line(tmp_path, capsys, breakage, message):
    import re

    folder = broken_copy(tmp_path / "s2", breakage)
    assert main(["speak", "Hi.", "-o", str(tmp_path / "out.wav"), "--model", str(folder), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(message, err.splitlines()[-1]), err[-3000:]
    assert len(err.splitlines()[-1]) < 1000 and not (tmp_path / "out.wav").exists()


def test_closed_or_undecodable_standard_input_ends_in_one_line(tmp_path, monkeypatch, capsys):
    import io

    output = str(tmp_path / "out.wav")
    monkeypatch.setattr(sys, "stdin", None)  # what Python sets when file descriptor 0 is closed
    assert main(["speak", "-", "-o", output, *MODEL]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "fish-s2 speak: error: standard input is closed; give the text as an argument or with --text-file"
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe bad"), encoding="utf-8"))
    assert main(["speak", "-", "-o", output, *MODEL]) == 1
    assert "standard input is not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("stream", [[], ["--stream"]], ids=["whole file", "--stream"])
def test_a_full_disk_ends_in_one_line_and_leaves_no_file(tmp_path, stream):
    import resource
    import signal

    def small_files() -> None:  # files over 20 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    done = subprocess.run(
        [sys.executable, "-m", "transformers_fish_s2.cli", "speak", TEXT, "-o", "out.wav", *stream, *MODEL, *GREEDY],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=small_files,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fish-s2 speak: error: cannot write audio to 'out.wav'") and "disk full" in last
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []
