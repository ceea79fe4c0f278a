"""Hostile and broken files: pickles in codec.pth, corrupt safetensors, absurd configs, audio that is not audio.

Every case must end in our own error naming the file or field, quickly, without running code from the file
and without allocating what a lying header asks for.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY, TINY_SHARDED, guarded_calls
from safetensors.torch import save_file
from transformers import AutoConfig, pipeline
from transformers.pipelines.text_to_audio import TextToAudioPipeline

from transformers_fish_s2 import (
    FishS2CheckpointError,
    FishS2CodecConfig,
    FishS2CodecModel,
    FishS2Config,
    FishS2ForConditionalGeneration,
    FishS2Processor,
)
from transformers_fish_s2.cli import main
from transformers_fish_s2.config_checks import MAX_LAYERS, MAX_PARAMETERS
from transformers_fish_s2.processing.audio import MAX_AUDIO_SECONDS, load_audio, read_audio

WAV = EXPECTED / "test_waveform_44k1_pcm16.wav"


def tiny_copy(directory: Path) -> Path:
    shutil.copytree(TINY, directory, ignore=shutil.ignore_patterns("expected"))
    return directory


class CreatesFileWhenUnpickled:
    """Unpickling this calls ``open(path, "w")``: a harmless stand-in for arbitrary code execution."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---------------------------------------------------------------------------------------------------------
# codec.pth
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def real_codec() -> bytes:
    return (TINY / "codec.pth").read_bytes()


REFUSED = r"(?s)torch.load\(weights_only=True, mmap=True\).*other pickled objects are refused for safety"
CODEC_FILES = {
    "tensors plus a pickled object (zip)": (lambda path, marker: torch.save({"w": torch.zeros(2), "x": CreatesFileWhenUnpickled(marker)}, path), REFUSED),
    "tensors plus a pickled object (legacy format)": (lambda path, marker: torch.save({"w": torch.zeros(2), "x": CreatesFileWhenUnpickled(marker)}, path, _use_new_zipfile_serialization=False), REFUSED),
    "a bare pickle": (lambda path, marker: path.write_bytes(pickle.dumps(CreatesFileWhenUnpickled(marker))), REFUSED),
    "truncated": (lambda path, marker: path.write_bytes(real_codec()[: len(real_codec()) // 2]), REFUSED),
    "random bytes": (lambda path, marker: path.write_bytes(os.urandom(4096)), REFUSED),
    "empty": (lambda path, marker: path.write_bytes(b""), REFUSED),
    "a dict of non-tensors": (lambda path, marker: torch.save({"w": 1, "b": "x"}, path), r"does not contain a flat state dict of tensors"),
    "a list of tensors": (lambda path, marker: torch.save([torch.zeros(1)], path), r"does not contain a flat state dict of tensors"),
    "tensors under unknown names": (lambda path, marker: torch.save({"surprise": torch.zeros(1)}, path), r"(?s)does not match FishS2CodecModel .*missing from the checkpoint.*1 unexpected tensor\(s\) the model has no place for:\n    surprise"),
}  # fmt: skip


@pytest.mark.parametrize(("write", "match"), list(CODEC_FILES.values()), ids=list(CODEC_FILES))
def test_hostile_codec_pth_is_refused_without_running_it(tmp_path, write, match):
    folder = tmp_path / "codec"
    folder.mkdir()
    shutil.copy(TINY / "codec_config.yaml", folder)
    marker = tmp_path / "code-was-run"
    write(folder / "codec.pth", marker)
    with pytest.raises(ValueError, match=match):
        FishS2CodecModel.from_pretrained(folder)
    assert not marker.exists()


def test_processor_refuses_a_pickled_object_in_codec_pth(tmp_path):
    folder = tiny_copy(tmp_path / "s2")
    marker = tmp_path / "code-was-run"
    torch.save({"w": torch.zeros(2), "x": CreatesFileWhenUnpickled(marker)}, folder / "codec.pth")
    with pytest.raises(ValueError, match=REFUSED):
        FishS2Processor.from_pretrained(folder)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def real_weights() -> bytes:
    return (TINY / "model.safetensors").read_bytes()


def edit_header(edit) -> bytes:
    """The tiny weights with their JSON header changed by ``edit(header)`` (data bytes unchanged)."""
    (size,) = struct.unpack("<Q", real_weights()[:8])
    header = json.loads(real_weights()[8 : 8 + size])
    edit(header)
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + real_weights()[8 + size :]


def first_tensor(header: dict) -> dict:
    return header[next(key for key in header if key != "__metadata__")]


UNREADABLE = (
    r"model.safetensors is not a readable safetensors file \(.*\); it is probably truncated or corrupted"
)
WEIGHT_FILES = {
    "truncated": (lambda: real_weights()[: len(real_weights()) // 2], UNREADABLE),
    "header length 2^62": (lambda: struct.pack("<Q", 2**62) + real_weights()[8:], UNREADABLE),
    "offsets beyond the file": (lambda: edit_header(lambda h: first_tensor(h).update(data_offsets=[0, 10**12])), UNREADABLE),
    "shape of 10^12 elements": (lambda: edit_header(lambda h: first_tensor(h).update(shape=[10**6, 10**6])), UNREADABLE),
    "header that is not JSON": (lambda: struct.pack("<Q", 9) + b"{not json" + real_weights()[8:], UNREADABLE),
    "empty": (lambda: b"", UNREADABLE),
}  # fmt: skip


@pytest.mark.parametrize(("content", "match"), list(WEIGHT_FILES.values()), ids=list(WEIGHT_FILES))
def test_corrupt_model_safetensors_fails_fast_naming_the_file(tmp_path, content, match):
    folder = tiny_copy(tmp_path / "s2")
    (folder / "model.safetensors").write_bytes(content())
    start = time.perf_counter()
    with pytest.raises(FishS2CheckpointError, match=match):
        FishS2ForConditionalGeneration.from_pretrained(folder)
    assert time.perf_counter() - start < 5


def test_sharded_index_that_is_not_json_is_named(tmp_path):
    folder = tiny_copy(tmp_path / "s2")
    (folder / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(
        FishS2CheckpointError, match=r"model.safetensors.index.json is not a valid safetensors index"
    ):
        FishS2ForConditionalGeneration.from_pretrained(folder)


def test_truncated_saved_codec_weights_are_named(tmp_path):
    FishS2CodecModel.from_pretrained(TINY).save_pretrained(tmp_path / "codec")
    weights = tmp_path / "codec" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(
        ValueError,
        match=r"codec/model.safetensors is not a readable safetensors file .*truncated or corrupted",
    ):
        FishS2CodecModel.from_pretrained(tmp_path / "codec")


def test_cli_reports_corrupt_weights_in_one_line(tmp_path, capsys):
    folder = tiny_copy(tmp_path / "s2")
    (folder / "model.safetensors").write_bytes(real_weights()[:1000])
    status = main(
        ["speak", "Hi.", "-o", str(tmp_path / "out.wav"), "--model", str(folder), "--device", "cpu"]
    )
    assert status == 1
    assert re.search(r"model.safetensors is not a readable safetensors file", capsys.readouterr().err)


CODES_FILES = {
    "truncated": (lambda path: path.write_bytes(path.read_bytes()[:40]), r"is not a safetensors codes file"),
    "float codes": (lambda path: save_file({"codes": torch.zeros(10, 3)}, str(path)), r"expected integer codes \[num_codebooks, frames\], got torch.float32"),
    "no codes tensor": (lambda path: save_file({"other": torch.zeros(10, 3, dtype=torch.long)}, str(path)), r"has no 'codes' tensor"),
    "9 codebooks": (lambda path: save_file({"codes": torch.zeros(9, 3, dtype=torch.long)}, str(path)), r"comes from another checkpoint: it has 9 codebooks, this codec 10"),
    "negative codes": (lambda path: save_file({"codes": torch.full((10, 3), -7)}, str(path)), r"audio_codes has negative codes"),
}  # fmt: skip


@pytest.mark.parametrize(("corrupt", "match"), list(CODES_FILES.values()), ids=list(CODES_FILES))
def test_cli_decode_refuses_broken_codes_files(tmp_path, capsys, corrupt, match):
    codes = tmp_path / "voice.codes.safetensors"
    save_file({"codes": torch.zeros(10, 3, dtype=torch.long)}, str(codes))
    corrupt(codes)
    output = tmp_path / "voice.wav"
    assert main(["decode", str(codes), "-o", str(output), "--model", str(TINY), "--device", "cpu"]) == 1
    assert re.search(match, capsys.readouterr().err.strip().splitlines()[-1])
    assert not output.exists()


# ---------------------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------------------

LIMIT_LAYERS = rf"layers \(.*\); the limit is {MAX_LAYERS} \(MAX_LAYERS\)"
LIMIT_PARAMETERS = r"parameters \(.*\); the limit is 1e\+11 \(MAX_PARAMETERS\)"
MODEL_CONFIGS = {
    "text n_layer=10^9": ("text_config", {"n_layer": 10**9}, rf"FishS2TextConfig describes 1000000000 {LIMIT_LAYERS}"),
    "text dim=10^9": ("text_config", {"dim": 10**9}, rf"FishS2TextConfig describes 2.05e\+12 {LIMIT_PARAMETERS}"),
    "text vocab_size=10^12": ("text_config", {"vocab_size": 10**12}, rf"FishS2TextConfig describes .* {LIMIT_PARAMETERS}"),
    "text intermediate_size=10^10": ("text_config", {"intermediate_size": 10**10}, rf"FishS2TextConfig describes .* {LIMIT_PARAMETERS}"),
    "text n_head=2^40": ("text_config", {"n_head": 2**40, "n_local_heads": 2**40}, rf"FishS2TextConfig describes .* {LIMIT_PARAMETERS}"),
    "text n_layer=-3": ("text_config", {"n_layer": -3}, r"FishS2TextConfig.n_layer must be a positive integer, got -3"),
    "text n_layer='36'": ("text_config", {"n_layer": "36"}, r"FishS2TextConfig.n_layer must be a positive integer, got '36'"),
    "text dim=2560.5": ("text_config", {"dim": 2560.5}, r"FishS2TextConfig.dim must be a positive integer, got 2560.5"),
    "text head_dim odd": ("text_config", {"head_dim": 15}, r"FishS2TextConfig.head_dim must be even"),
    "fast n_layer=10^9": ("audio_decoder_config", {"n_layer": 10**9}, rf"FishS2FastTransformerConfig describes 1000000000 {LIMIT_LAYERS}"),
    "fast num_codebooks=10^9": ("audio_decoder_config", {"num_codebooks": 10**9}, rf"FishS2FastTransformerConfig describes .* {LIMIT_PARAMETERS}"),
    "fast num_codebooks=0": ("audio_decoder_config", {"num_codebooks": 0}, r"num_codebooks must be a positive integer, got 0"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("section", "values", "match"), list(MODEL_CONFIGS.values()), ids=list(MODEL_CONFIGS)
)
def test_absurd_model_config_fails_before_building_anything(tmp_path, section, values, match):
    folder = tiny_copy(tmp_path / "s2")
    config = json.loads((folder / "config.json").read_text())
    config[section].update(values)
    (folder / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    for load in (AutoConfig.from_pretrained, FishS2ForConditionalGeneration.from_pretrained):
        with pytest.raises(ValueError, match=match):
            load(folder)
    assert time.perf_counter() - start < 2  # refused from the numbers, nothing was built


def test_parameter_count_used_for_the_limit_is_exact():
    for config in (FishS2Config(), FishS2Config.from_pretrained(TINY)):
        with torch.device("meta"):
            model = FishS2ForConditionalGeneration(config)
        assert config.text_config.num_parameters == sum(p.numel() for p in model.text_model.parameters())
        assert config.audio_decoder_config.num_parameters == sum(
            p.numel() for p in model.audio_decoder.parameters()
        )
    released = FishS2Config()
    total = released.text_config.num_parameters + released.audio_decoder_config.num_parameters
    assert total == 4_561_852_416 and total * 20 < MAX_PARAMETERS  # s2-pro is far below the limit
    for codec_config in (
        FishS2CodecConfig(),
        FishS2CodecConfig.from_codec_config_file(TINY / "codec_config.yaml"),
    ):
        with torch.device("meta"):
            codec = FishS2CodecModel(codec_config)
        actual = sum(p.numel() for p in codec.parameters())
        assert 0.98 * actual <= codec_config.num_parameters <= actual  # a lower bound: biases/norms left out


CODEC_CONFIGS = {
    "quantizer n_layer=10^9": ("n_layer: 2", "n_layer: 1000000000", rf"FishS2CodecConfig describes 2000000011 {LIMIT_LAYERS}"),
    "decoder_dim=2^40": ("decoder_dim: 64", "decoder_dim: 1099511627776", rf"FishS2CodecConfig describes .* {LIMIT_PARAMETERS}"),
    "codebook_size=10^12": ("codebook_size: 32", "codebook_size: 1000000000000", rf"FishS2CodecConfig describes .* {LIMIT_PARAMETERS}"),
    "a decoder rate of 0": ("decoder_rates: [8, 8, 4, 2]", "decoder_rates: [0, 8, 4, 2]", r"FishS2CodecConfig.decoder_rates must be a non-empty list of positive integers"),
    "codebook_dim=-8": ("codebook_dim: 8", "codebook_dim: -8", r"FishS2CodecConfig.codebook_dim must be a positive integer, got -8"),
    "sample_rate='fast'": ("sample_rate: 44100", "sample_rate: fast", r"FishS2CodecConfig.sampling_rate must be a positive integer, got 'fast'"),
    "not YAML": ("encoder_rates: [2, 4, 8, 8]", "encoder_rates: [2, 4", r"codec_config.yaml is not a valid codec config file"),
    "a python object tag": ("sample_rate: 44100", "sample_rate: !!python/object/apply:os.system ['touch HACKED']", r"codec_config.yaml is not a valid codec config file: could not determine a constructor"),
}  # fmt: skip


@pytest.mark.parametrize(("old", "new", "match"), list(CODEC_CONFIGS.values()), ids=list(CODEC_CONFIGS))
def test_absurd_codec_config_fails_before_building_anything(tmp_path, monkeypatch, old, new, match):
    monkeypatch.chdir(tmp_path)
    folder = tiny_copy(tmp_path / "s2")
    yaml_file = folder / "codec_config.yaml"
    assert old in yaml_file.read_text()
    yaml_file.write_text(yaml_file.read_text().replace(old, new))
    start = time.perf_counter()
    for load in (FishS2CodecModel.from_pretrained, FishS2Processor.from_pretrained):
        with pytest.raises(ValueError, match=match):
            load(folder)
    assert time.perf_counter() - start < 2
    assert not (tmp_path / "HACKED").exists()


def test_absurd_saved_codec_config_fails_before_building_anything(tmp_path):
    FishS2CodecModel.from_pretrained(TINY).save_pretrained(tmp_path / "codec")
    config_file = tmp_path / "codec" / "config.json"
    config = json.loads(config_file.read_text())
    config["quantizer_transformer_layers"] = 10**9
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=LIMIT_LAYERS):
        FishS2CodecModel.from_pretrained(tmp_path / "codec")


def test_corrupt_tokenizer_and_config_files_name_what_was_loading(tmp_path):
    broken_tokenizer = tiny_copy(tmp_path / "tokenizer")
    (broken_tokenizer / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot load FishS2Processor from .*tokenizer'"):
        FishS2Processor.from_pretrained(broken_tokenizer)
    broken_config = tiny_copy(tmp_path / "config")
    (broken_config / "config.json").write_text("{not json")
    with pytest.raises(OSError, match=r"config.json' is not a valid JSON file"):
        FishS2ForConditionalGeneration.from_pretrained(broken_config)


# ---------------------------------------------------------------------------------------------------------
# audio files
# ---------------------------------------------------------------------------------------------------------


def write_wav(samples: int, rate: int):
    def write(path: Path) -> None:
        soundfile.write(path, np.zeros(samples, np.float32), rate, format="WAV", subtype="PCM_16")

    return write


CANNOT_READ = r"cannot read audio from {where}"
AUDIO_FILES = {
    "text file": (lambda path: path.write_text("not audio\n" * 100), CANNOT_READ),
    "zero bytes": (lambda path: path.write_bytes(b""), CANNOT_READ),
    "RIFF header only": (lambda path: path.write_bytes(WAV.read_bytes()[:12]), CANNOT_READ),
    "random bytes": (lambda path: path.write_bytes(os.urandom(10_000)), CANNOT_READ),
    "no samples": (write_wav(0, 44100), r"audio file {where} contains no samples"),
    "11 minutes (at 1 Hz)": (write_wav(660, 1), rf"audio file {{where}} is 660.0 s long; audio inputs are limited to max_seconds={MAX_AUDIO_SECONDS:g} s"),
}  # fmt: skip


@pytest.mark.parametrize(("write", "match"), list(AUDIO_FILES.values()), ids=list(AUDIO_FILES))
def test_hostile_audio_files_are_refused_everywhere_they_are_read(tmp_path, capsys, write, match):
    path = tmp_path / "voice.wav"
    write(path)
    in_file = match.format(where=re.escape(repr(str(path))))
    with pytest.raises(ValueError, match=in_file):
        read_audio(path)
    with pytest.raises(ValueError, match=match.format(where="the given bytes")):
        load_audio(path.read_bytes())
    processor = FishS2Processor.from_pretrained(TINY)
    too_long = r" is 660.0 s long; .* the model context is 512 tokens \(max_length\)"  # checked before reading
    in_reference = re.escape("references[0]['audio']") + (too_long if "660" in match else ": " + in_file)
    with pytest.raises(ValueError, match=in_reference):
        processor("Hi.", references=[{"text": "Hello.", "audio": str(path)}])
    output = tmp_path / "voice.codes.safetensors"
    assert main(["encode", str(path), "-o", str(output), "--model", str(TINY), "--device", "cpu"]) == 1
    assert re.search(in_file, capsys.readouterr().err)
    assert not output.exists()


def test_a_wav_header_that_lies_about_its_size_reads_only_what_is_there(tmp_path):
    path = tmp_path / "voice.wav"
    write_wav(1000, 44100)(path)
    content = bytearray(path.read_bytes())
    data = content.find(b"data")
    content[data + 4 : data + 8] = struct.pack("<I", 0xFFFFFFF0)  # the data chunk claims 4 GB
    path.write_bytes(bytes(content))
    audio, rate = read_audio(path)
    assert rate == 44100 and audio.shape == (1, 1000)


# ---------------------------------------------------------------------------------------------------------
# incomplete checkpoints: never the default s2-pro, never a tokenizer without vocabulary, never codes as audio
# ---------------------------------------------------------------------------------------------------------

GUARD_SETUP = (
    "from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor, FishS2CodecModel"
)
MAX_GROWTH_MB, MAX_SECONDS = 300, 5


def assert_cheap_failures(outcomes: dict[str, dict], matches: dict[str, str]) -> None:
    """Every guarded case failed with our message, in under 5 s, with peak RSS growth under 300 MB."""
    for name, match in matches.items():
        outcome = outcomes[name]
        assert outcome["error"] is not None and re.search(match, outcome["error"]), (name, outcome["error"])
        assert outcome["seconds"] < MAX_SECONDS, (name, outcome)
        assert outcome["rss_growth_mb"] < MAX_GROWTH_MB, (name, outcome)


BROKEN_CONFIGS = {
    "missing": (lambda path: path.unlink(), r"config.json is missing: the checkpoint is incomplete"),
    "a directory": (lambda path: (path.unlink(), path.mkdir()), r"config.json is a directory, not a file"),
    "a FIFO": (lambda path: (path.unlink(), os.mkfifo(path)), r"config.json is not a regular file \(a FIFO"),
    "/dev/zero": (lambda path: (path.unlink(), path.symlink_to("/dev/zero")), r"config.json is not a regular file"),
    "no sub-configs": (lambda path: path.write_text('{"model_type": "fish_qwen3_omni"}'), r"config.json is missing or incomplete \(no text_config / audio_decoder_config\)"),
}  # fmt: skip


def test_incomplete_config_never_builds_the_default_model(tmp_path):
    cases, matches = {}, {}
    for index, (name, (breakage, match)) in enumerate(BROKEN_CONFIGS.items()):
        folder = tiny_copy(tmp_path / f"s2-{index}")
        breakage(folder / "config.json")
        cases[name] = f"FishS2ForConditionalGeneration.from_pretrained({str(folder)!r})"
        matches[name] = rf"^FishS2CheckpointError: .*{match}"
    assert_cheap_failures(guarded_calls(cases, GUARD_SETUP), matches)


@pytest.mark.parametrize(
    ("breakage", "match"),
    [
        (lambda path: path.unlink(), r"tokenizer.json is missing"),
        (lambda path: (path.unlink(), path.mkdir()), r"tokenizer.json is a directory"),
        (lambda path: path.write_text("{}"), r"tokenizer.json: Model missing"),
    ],
    ids=["missing", "a directory", "{}"],
)
def test_tokenizer_json_is_required_not_replaced_by_an_empty_vocabulary(tmp_path, breakage, match):
    folder = tiny_copy(tmp_path / "s2")
    breakage(folder / "tokenizer.json")
    with pytest.raises(ValueError, match=rf"cannot load FishS2Processor from .*{match}"):
        FishS2Processor.from_pretrained(folder)


def test_a_tokenizer_that_makes_no_tokens_is_refused():
    tokenizer = FishS2Processor.from_pretrained(TINY, load_codec=False).tokenizer
    tokenizer.backend_tokenizer.model = type(tokenizer.backend_tokenizer.model)(vocab={}, merges=[])
    with pytest.raises(ValueError, match=r"the tokenizer turns text into no tokens"):
        FishS2Processor(tokenizer)


@pytest.mark.parametrize(
    ("breakage", "cause"),
    [
        (lambda folder: (folder / "codec.pth").write_bytes(real_codec()[:1000]), r"Could not read the codec checkpoint"),
        (lambda folder: (folder / "codec_config.yaml").unlink(), r"codec.pth does not match FishS2CodecModel"),  # the defaults describe the full-size codec
    ],
    ids=["truncated codec.pth", "no codec config"],
)  # fmt: skip
def test_pipeline_without_its_processor_raises_instead_of_returning_codes(tmp_path, breakage, cause):
    folder = tiny_copy(tmp_path / "s2")
    breakage(folder)
    with pytest.raises(ValueError, match=cause):
        FishS2Processor.from_pretrained(folder)
    # transformers' pipeline() swallows the processor's error; ours raises it...
    with pytest.raises(ValueError, match=rf"needs the FishS2Processor of .*which failed to load: .*{cause}"):
        pipeline("text-to-speech", model=str(folder))
    tts = pipeline("text-to-speech", model=str(folder), pipeline_class=TextToAudioPipeline)  # the stock class
    assert tts.processor is None  # the stock class carries on without it...
    with pytest.raises(
        ValueError, match=rf"running without the FishS2Processor of .*whose loading failed: .*{cause}"
    ):
        tts("Hello there.", generate_kwargs={"max_new_tokens": 2})  # ...generate raises it


# ---------------------------------------------------------------------------------------------------------
# parsers that cannot be bombed
# ---------------------------------------------------------------------------------------------------------

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)  # 10^9 values once expanded, 400 bytes on disk


YAML_BOMBS = {
    "alias bomb": (ALIAS_BOMB, r"aliases expand to more than 10000 values \(MAX_YAML_NODES\)"),
    "100000 levels of nesting": ("a: " + "[" * 100_000 + "]" * 100_000, r"nesting deeper than 64 levels"),
    "recursive alias": ("a: &a [1, *a]", r"a cycle"),
}


def test_codec_config_yaml_cannot_be_bombed(tmp_path):
    cases, matches = {}, {}
    for index, (name, (content, match)) in enumerate(YAML_BOMBS.items()):
        folder = tiny_copy(tmp_path / f"s2-{index}")
        (folder / "codec_config.yaml").write_text(content)
        cases[name] = f"FishS2CodecModel.from_pretrained({str(folder)!r})"
        matches[name] = rf"codec_config.yaml is not a valid codec config file: .*{match}"
    assert_cheap_failures(guarded_calls(cases, GUARD_SETUP), matches)


def test_deeply_nested_json_codec_config_gives_our_error(tmp_path):
    folder = tiny_copy(tmp_path / "s2")
    (folder / "codec_config.yaml").unlink()
    (folder / "codec_config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(
        ValueError, match=r"codec_config.json is not a valid codec config file: it nests too deeply"
    ):
        FishS2CodecModel.from_pretrained(folder)


def test_values_in_messages_are_cut_short(tmp_path):
    folder = tiny_copy(tmp_path / "s2")
    yaml_file = folder / "codec_config.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("sample_rate: 44100", f"sample_rate: {'x' * 500_000}"))
    with pytest.raises(
        ValueError, match=r"sampling_rate must be a positive integer, got 'xxx.*\.\.\."
    ) as caught:
        FishS2CodecModel.from_pretrained(folder)
    assert len(str(caught.value)) < 300
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["n_layer"] = [[1] * 1000] * 1000
    with pytest.raises(ValueError, match=r"n_layer must be a positive integer, got \[\[1, 1,") as caught:
        FishS2Config(**config)
    assert len(str(caught.value)) < 300


def test_an_oversized_codec_config_file_is_not_read(tmp_path):
    folder = tiny_copy(tmp_path / "s2")
    with open(folder / "codec_config.yaml", "a") as handle:
        handle.write("#" * 2**20)
    with pytest.raises(
        ValueError, match=r"codec_config.yaml is \d+ bytes; files of this kind are at most 1048576"
    ):
        FishS2CodecModel.from_pretrained(folder)


# ---------------------------------------------------------------------------------------------------------
# values checked, not only types
# ---------------------------------------------------------------------------------------------------------

CONFIG_VALUES = {
    "rope_base 0": ("text_config", {"rope_base": 0}, r"FishS2TextConfig.rope_base must be a finite number > 0, got 0"),
    "norm_eps -1e-6": ("text_config", {"norm_eps": -1e-6}, r"FishS2TextConfig.norm_eps must be a finite number > 0, got -1e-06"),
    "fast rope_base inf": ("audio_decoder_config", {"rope_base": float("inf")}, r"FishS2FastTransformerConfig.rope_base must be a finite number > 0"),
    "max_seq_len 0": ("text_config", {"max_seq_len": 0}, r"FishS2TextConfig.max_seq_len must be a positive integer, got 0"),
    "eos_token_id a string": (None, {"eos_token_id": "151645"}, r"eos_token_id must be one integer token id in the text vocabulary \[0, 512\), got '151645'"),
    "eos_token_id a float": (None, {"eos_token_id": 5.0}, r"eos_token_id must be one integer token id .*got 5.0"),
    "eos_token_id a list": (None, {"eos_token_id": [5, 6]}, r"eos_token_id must be one integer token id .*got \[5, 6\]"),
    "pad_token_id a bool": (None, {"pad_token_id": True}, r"pad_token_id must be one integer token id .*got True"),
    "semantic_start_token_id a string": (None, {"semantic_start_token_id": "100"}, r"semantic_start_token_id must be an integer token id, got '100'"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("section", "values", "match"), list(CONFIG_VALUES.values()), ids=list(CONFIG_VALUES)
)
def test_config_values_are_checked_not_only_their_types(tmp_path, section, values, match):
    folder = tiny_copy(tmp_path / "s2")
    config = json.loads((folder / "config.json").read_text())
    (config[section] if section else config).update(values)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        FishS2ForConditionalGeneration.from_pretrained(folder)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [("rope_base: 10000\n  norm_eps", "rope_base: 0\n  norm_eps", "rope_base"), ("norm_eps: 1e-5\n  dropout", "norm_eps: -1.0e-5\n  dropout", "norm_eps")],
    ids=["rope_base 0", "norm_eps negative"],
)  # fmt: skip
def test_codec_config_values_are_checked(tmp_path, old, new, field):
    folder = tiny_copy(tmp_path / "s2")
    yaml_file = folder / "codec_config.yaml"
    assert old in yaml_file.read_text()
    yaml_file.write_text(yaml_file.read_text().replace(old, new))
    with pytest.raises(
        ValueError,
        match=rf"FishS2CodecConfig.{field} must be a finite number > 0|quantizer transformers and encoder transformers differ in {field}",
    ):
        FishS2CodecModel.from_pretrained(folder)


def tiny_tensors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(TINY / "model.safetensors")


def poisoned(value: float) -> dict[str, torch.Tensor]:
    tensors = tiny_tensors()
    tensors["text_model.model.norm.weight"][3] = value
    return tensors


def retyped(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    tensors = tiny_tensors()
    tensors["text_model.model.norm.weight"] = tensors["text_model.model.norm.weight"].to(dtype)
    return tensors


WEIGHT_VALUES = {
    "NaN": (lambda: poisoned(float("nan")), r"has NaN or infinite values in 1 tensor\(s\): text_model.model.norm.weight"),
    "inf": (lambda: poisoned(float("inf")), r"has NaN or infinite values in 1 tensor\(s\): text_model.model.norm.weight"),
    "int64": (lambda: retyped(torch.int64), r"stores 1 weight\(s\) with a non-floating dtype: text_model.model.norm.weight \(I64\)"),
    "bool": (lambda: retyped(torch.bool), r"non-floating dtype: text_model.model.norm.weight \(BOOL\)"),
}  # fmt: skip


@pytest.mark.parametrize(("tensors", "match"), list(WEIGHT_VALUES.values()), ids=list(WEIGHT_VALUES))
def test_weights_with_bad_values_or_dtypes_are_refused(tmp_path, tensors, match):
    folder = tiny_copy(tmp_path / "s2")
    save_file(tensors(), str(folder / "model.safetensors"))
    with pytest.raises(FishS2CheckpointError, match=match):
        FishS2ForConditionalGeneration.from_pretrained(folder)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda value: value.fill_(float("nan")), r"has NaN or infinite values in 1 tensor\(s\)"),
        (lambda value: value.long(), r"stores 1 weight\(s\) with a non-floating dtype: .* \(torch.int64\)"),
    ],
    ids=["NaN", "int64"],
)
def test_codec_weights_with_bad_values_or_dtypes_are_refused_in_one_short_message(tmp_path, change, match):
    folder = tiny_copy(tmp_path / "s2")
    state = torch.load(folder / "codec.pth", weights_only=True)
    key = next(iter(state))
    state[key] = change(state[key].clone())
    torch.save(state, folder / "codec.pth")
    with pytest.raises(FishS2CheckpointError, match=match) as caught:
        FishS2CodecModel.from_pretrained(folder)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize(
    "target", ["../outside.safetensors", "/tmp/outside.safetensors", "sub/../../outside.safetensors"]
)
def test_an_index_may_not_point_outside_the_checkpoint_folder(tmp_path, target):
    folder = tmp_path / "s2"
    shutil.copytree(TINY_SHARDED, folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    key = next(iter(index["weight_map"]))
    index["weight_map"][key] = target
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FishS2CheckpointError, match=r"weight_map points outside the checkpoint folder"):
        FishS2ForConditionalGeneration.from_pretrained(folder)


@pytest.mark.parametrize("text", ["\u200b", "\u200b\u200c\u200d \ufeff\u2060", "<|speaker:0|>\u200b"])
def test_zero_width_only_text_counts_as_empty(text):
    processor = FishS2Processor.from_pretrained(TINY, load_codec=False)
    with pytest.raises(ValueError, match=r"text (is empty or only whitespace|has only speaker tags)"):
        processor(text)
