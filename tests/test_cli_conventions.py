"""What a user of other command-line tools expects of ``fish-s2``: a fast ``--help``, ``--version``, -q/-v,
--threads, every argument checked before the model loads, ``-o -`` to a pipe, one --dtype vocabulary, the
subcommand's usage for an unknown option, and messages that say what happened (offline, short or silent
reference clips, codes from another codec, --compile)."""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY

from transformers_fish_s2 import __version__
from transformers_fish_s2.cli import build_parser, dtype_name, main, write_codes_file
from transformers_fish_s2.hub import explain_hub_error

TEXT = "Nice to meet you. How are you today?"
MODEL = ["--model", str(TINY), "--device", "cpu"]
GREEDY = ["--greedy", "--max-new-tokens", "12"]
MISSING_MODEL = ["--model", "./no-such-checkpoint"]
REFERENCE_WAV = EXPECTED / "test_waveform_44k1_pcm16.wav"


def console_script() -> list[str]:
    """The installed ``fish-s2`` script, or the same start-up (argv[0] ``fish-s2``) where it is not installed."""
    script = Path(sys.executable).with_name("fish-s2")
    if script.exists():
        return [str(script)]
    start = "import sys; sys.argv[0] = 'fish-s2'; from transformers_fish_s2.cli import main; sys.exit(main())"
    return [sys.executable, "-c", start]


@pytest.mark.parametrize("command", [[], ["eval"]], ids=["fish-s2", "eval"])
def test_help_answers_without_importing_torch(command, capsys):
    started = time.perf_counter()
    result = subprocess.run(
        [*console_script(), *command, "--help"], capture_output=True, text=True, timeout=60
    )
    seconds = time.perf_counter() - started
    name = " ".join(["fish-s2", *command])
    print(f"{name} --help: {seconds:.2f} s wall")  # shown with pytest -s; the closing note quotes it
    assert result.returncode == 0 and ("speak" in result.stdout or "--asr" in result.stdout)
    assert seconds < 3.0, f"{name} --help took {seconds:.2f} s"

    probe = (
        "import sys; sys.argv[0] = 'fish-s2'; from transformers_fish_s2.cli import build_parser, main; "
        "build_parser().parse_known_args(['speak', 'hi']); main(['eval', '--help']); "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip().splitlines()[-1] == "[]", imported.stderr


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fish-s2 {__version__}"


def test_unknown_option_prints_the_subcommands_usage(capsys):
    assert main(["speak", "hi", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("usage: fish-s2 speak ")
        and "fish-s2 speak: error: unrecognized arguments: --bogus" in err
    )


def test_eval_errors_in_the_fish_s2_style(tmp_path, capsys):
    assert main(["eval", "--model", "m"]) == 2
    assert "fish-s2 eval: error: the following arguments are required" in capsys.readouterr().err
    argv = ["eval", "--model", "m", "--meta", str(tmp_path / "missing.lst"), "--output-dir", str(tmp_path)]
    assert main([*argv, "--asr", "a"]) == 1
    assert capsys.readouterr().err.startswith("fish-s2 eval: error: ")


def test_one_dtype_vocabulary_everywhere():
    from transformers_fish_s2.evaluation.cli import build_parser as eval_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    parsers = [*(p for name, p in subcommands.items() if name != "eval"), eval_parser()]
    dtype_actions = [a for p in parsers for a in p._actions if "--dtype" in a.option_strings]
    assert len(dtype_actions) >= 3 and all(a.type is dtype_name for a in dtype_actions)
    assert [dtype_name(v) for v in ("bf16", "FP16", "fp32", "auto")] == [
        "bfloat16",
        "float16",
        "float32",
        "auto",
    ]
    with pytest.raises(argparse.ArgumentTypeError, match="choose from auto, bfloat16, float16, float32"):
        dtype_name("int8")


def test_memory_takes_the_shared_dtype_names(capsys):
    assert main(["memory", "--model", str(TINY), "--dtype", "fp32"]) == 0
    assert "compute dtype float32, quantization none" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--temperature", "0"], "--temperature must be > 0 when sampling, got 0.0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
        (["--top-k", "-1"], "--top-k must be an integer >= 0"),
        (["--seed", "-3"], "--seed must be >= 0"),
        (["--chunk-length", "0"], "--chunk-length must be at least 1"),
        (
            ["--reference-audio", str(REFERENCE_WAV), "--reference-text", "hi<|im_end|>"],
            "'<|im_end|>', a control",
        ),
        (["-o", "-", "--format", "pcm", "--save-codes", "x.npy"], "codes files end in .safetensors"),
        (["-o", "a.wav", "--format", "pcm"], "--format applies to -o -"),
    ],
)
def test_every_argument_is_checked_before_the_model_loads(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the model does not exist: any model loading would fail with another message
    assert main(["speak", "hi", *MISSING_MODEL, *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "no-such-checkpoint" not in err, err


def test_control_tokens_in_the_text_are_refused_before_loading(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["speak", "Hello <|im_start|>system", *MISSING_MODEL]) == 1
    assert "contains '<|im_start|>', a control token" in capsys.readouterr().err


def test_threads_quiet_and_verbose(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert main(["speak", TEXT, "-o", str(tmp_path / "a.wav"), "--threads", "2", *MODEL, *GREEDY]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert "wrote " in capsys.readouterr().err
    assert main(["speak", TEXT, "-o", str(tmp_path / "b.wav"), "-q", "--no-progress", *MODEL, *GREEDY]) == 0
    quiet = capsys.readouterr().err.splitlines()  # no loading bar, no "wrote": only the warning about the cut
    assert quiet == [
        "warning: generation stopped at --max-new-tokens before the end of speech; the audio may be cut"
    ]
    assert main(["-v", "memory", "--model", str(TINY)]) == 0
    assert logging.getLogger("transformers").level == logging.INFO
    assert main(["memory", "--model", str(TINY)]) == 0
    assert logging.getLogger("transformers").level == logging.ERROR
    assert main(["speak", "hi", "--threads", "0"]) == 2
    assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err


class _Stdout:
    """Stands in for ``sys.stdout``: a text stream with a binary ``buffer``, as a pipe would be."""

    def __init__(self):
        self.buffer = io.BytesIO()

    def write(self, text: str) -> int:
        raise AssertionError(f"text written to standard output would corrupt the audio: {text!r}")

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_output_to_stdout_is_wav_or_raw_pcm(stream, tmp_path, monkeypatch, capsys):
    expected_file = tmp_path / "file.wav"
    assert main(["speak", TEXT, "-o", str(expected_file), *MODEL, *GREEDY]) == 0
    expected, rate = soundfile.read(expected_file, dtype="int16")
    outputs = {}
    for fmt in ("wav", "pcm"):
        stdout = _Stdout()
        monkeypatch.setattr(sys, "stdout", stdout)
        argv = ["speak", TEXT, "-o", "-", "--format", fmt, *MODEL, *GREEDY, *(["--stream"] if stream else [])]
        assert main(argv) == 0
        outputs[fmt] = stdout.buffer.getvalue()
    assert "wrote standard output: 0.56 s of audio (12 frames)" in capsys.readouterr().err
    wav, wav_rate = soundfile.read(io.BytesIO(outputs["wav"]), dtype="int16")
    assert wav_rate == rate == 44100 and wav.shape == expected.shape == (12 * 2048,)
    np.testing.assert_allclose(wav, expected, atol=1)  # the same audio, to one 16-bit step
    np.testing.assert_array_equal(np.frombuffer(outputs["pcm"], dtype="<i2"), wav)


def test_offline_hub_errors_say_how_to_skip_retries_and_that_pushing_uploads(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    unreachable = ConnectionError("Couldn't connect to 'https://huggingface.co'")
    message = explain_hub_error(unreachable, "fishaudio/s2-pro")
    assert "cannot be reached" in message and "HF_HUB_OFFLINE=1" in message
    upload = explain_hub_error(unreachable, "me/my-voice", action="upload")
    assert upload.startswith("cannot upload to 'me/my-voice'") and "download" not in upload


def test_offline_push_to_hub_speaks_of_uploading(model, processor, monkeypatch):
    from huggingface_hub import constants

    from transformers_fish_s2.hub import HubAccessError, push_to_hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubAccessError, match=r"cannot upload to 'me/voice': offline mode is on") as caught:
        push_to_hub(model, processor, "me/voice", token="hf_not_used")
    assert "download" not in str(caught.value)


def _write_wav(path: Path, seconds: float, amplitude: float) -> Path:
    t = np.arange(int(seconds * 44100)) / 44100
    soundfile.write(path, amplitude * np.sin(2 * np.pi * 220 * t), 44100)
    return path


def test_short_and_silent_reference_clips_are_warned_about_before_loading(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    short, silent = _write_wav(tmp_path / "short.wav", 1.5, 0.5), _write_wav(tmp_path / "silent.wav", 6, 0.0)
    references = ["--reference-audio", str(short), "--reference-text", "a", "--reference-audio", str(silent)]
    assert main(["speak", "hi", *references, "--reference-text", "b", *MISSING_MODEL]) == 1
    err = capsys.readouterr().err
    assert "'short.wav' is only 1.5 s long" in err.replace(str(tmp_path) + os.sep, "")
    assert "is silent" in err and "silent.wav" in err
    assert err.index("is silent") < err.index("no-such-checkpoint")  # warned before the model was loaded


def test_a_codes_file_from_another_codec_says_so(tmp_path, capsys):
    other = tmp_path / "other.codes.safetensors"
    write_codes_file(
        other, torch.zeros(8, 20, dtype=torch.long), sampling_rate=24000, text="hi", model="other/tts"
    )
    assert main(["speak", "hi", "--reference-audio", str(other), "-o", str(tmp_path / "x.wav"), *MODEL]) == 1
    err = capsys.readouterr().err
    assert "comes from another checkpoint (written with --model other/tts)" in err
    assert "24000 Hz" in err and "8 codebooks" in err and "fish-s2 encode --model" in err


def test_compile_says_it_compiles_before_the_wait(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["speak", "hi", "--compile", *MISSING_MODEL]) == 1
    err = capsys.readouterr().err
    assert "--compile: compiling the frame step" in err and err.index("compiling") < err.index("no-such")
