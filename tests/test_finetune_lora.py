"""LoRA fine-tuning with the Trainer on the tiny fixture: overfitting two clips, the adapter round trip, merging,
the base on disk, QLoRA on CPU, and ``fish-s2 finetune``.

Generation criterion: greedy generation (deterministic) from each training transcript's prompt is compared with
the training clip's codes over its first ``FRAMES`` frames; the score is the fraction of the ``FRAMES x 10``
(frame, codebook) codes that are equal, a frame not generated counting as all wrong. The first frames are where
an autoregressive model's output depends most directly on what it learnt (a miss later on is mostly a
consequence of an earlier one), and an untrained tiny model matches a code by chance with probability about
1/64 per semantic code and 1/32 per residual one. The adapter must score at least 0.5 and beat the base by
0.25 or more.
"""

from __future__ import annotations

import hashlib
import json
import re

import datasets
import pytest
import soundfile
import torch
from conftest import EXPECTED, TINY
from peft import PeftModel
from safetensors.torch import load_file
from test_examples import load_example
from test_hub import LocalHub

from transformers_fish_s2 import FishS2ForConditionalGeneration
from transformers_fish_s2.cli import main
from transformers_fish_s2.training import DatasetMapper, prepare_examples
from transformers_fish_s2.training.adapter import save_adapter
from transformers_fish_s2.training.lora import LORA_TARGETS, lora_config
from transformers_fish_s2.training.trainer import finetune, training_arguments

TEXTS = ["hello world", "a second clip"]
SPANS = [(0, 30000), (40000, 80000)]
FRAMES = 8


def fresh_model() -> FishS2ForConditionalGeneration:
    return FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()


def checkpoint_hashes() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(TINY.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def clips():
    audio, _ = soundfile.read(EXPECTED / "test_waveform_44k1_pcm16.wav", dtype="float32")
    return [audio[a:b] for a, b in SPANS]


@pytest.fixture(scope="module")
def examples(processor, clips):
    return prepare_examples(processor, TEXTS, clips, sampling_rate=44100)


def clip_codes(example) -> torch.Tensor:
    semantic = (example["input_ids"] >= 419) & (example["input_ids"] <= 482)
    return example["audio_codes"][:, semantic]


@torch.no_grad()
def greedy_codes(model, processor, text: str) -> torch.Tensor:
    out = model.generate(**processor(text=text), do_sample=False, max_new_tokens=24)
    return out.sequences[0, :, : int(out.lengths[0])]


def match_score(generated: torch.Tensor, target: torch.Tensor) -> float:
    frames = min(FRAMES, target.shape[1])
    n = min(frames, generated.shape[1])
    return (generated[:, :n] == target[:, :n]).sum().item() / (target.shape[0] * frames)


@pytest.fixture(scope="module")
def trained(processor, examples, tmp_path_factory):
    hashes = checkpoint_hashes()
    model = fresh_model()
    base_codes = [greedy_codes(model, processor, text) for text in TEXTS]
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("run")
    args = training_arguments(
        out / "trainer", max_steps=40, learning_rate=1e-2, batch_size=2, logging_steps=1, disable_tqdm=True
    )
    adapted, history = finetune(model, processor, examples, args, lora=lora_config(r=8, alpha=16))
    save_adapter(adapted, out / "adapter", base_model=str(TINY))
    tuned_codes = [greedy_codes(adapted, processor, text) for text in TEXTS]
    return {
        "model": adapted,
        "history": history,
        "base_codes": base_codes,
        "tuned_codes": tuned_codes,
        "hashes": hashes,
        "dir": out,
    }


def test_forty_steps_at_least_halve_the_training_loss(trained):
    losses = [entry["loss"] for entry in trained["history"] if "loss" in entry]
    assert len(losses) == 40
    assert losses[-1] <= 0.5 * losses[0], losses
    last = [entry for entry in trained["history"] if "loss" in entry][-1]
    assert last["slow_loss"] + last["fast_loss"] == pytest.approx(last["loss"], rel=1e-3)
    assert trained["model"].base_model.model.text_model.model.layers[0].gradient_checkpointing


def test_the_adapter_reproduces_the_clips_first_frames_better_than_the_base(trained, examples):
    for text, example, base, adapted in zip(TEXTS, examples, trained["base_codes"], trained["tuned_codes"]):
        target = clip_codes(example)
        tuned, untuned = match_score(adapted, target), match_score(base, target)
        assert tuned >= 0.5 and tuned >= untuned + 0.25, (text, tuned, untuned)


def test_only_adapter_weights_train(trained):
    trainable = [name for name, p in trained["model"].named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_adapter_folder_has_adapter_files_and_a_model_card(trained):
    adapter = trained["dir"] / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {
        p.name for p in adapter.iterdir()
    }
    card = (adapter / "README.md").read_text()
    assert f"base_model: {TINY}" in card and "library_name: peft" in card
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    keys = load_file(adapter / "adapter_model.safetensors").keys()
    assert len(keys) == 2 * 20 and all("lora_A" in key or "lora_B" in key for key in keys)  # no base weights


def test_save_reload_gives_identical_codes(trained, processor):
    reloaded = PeftModel.from_pretrained(fresh_model(), trained["dir"] / "adapter").eval()
    for text, expected in zip(TEXTS, trained["tuned_codes"]):
        assert torch.equal(greedy_codes(reloaded, processor, text), expected)


def test_merged_equals_unmerged(trained, processor, examples):
    unmerged = PeftModel.from_pretrained(fresh_model(), trained["dir"] / "adapter").eval()
    batch = {key: value[None] for key, value in examples[0].items()}
    with torch.no_grad():
        before = unmerged(**batch)
    merged = unmerged.merge_and_unload()
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        after = merged(**batch)
    torch.testing.assert_close(after.logits, before.logits, atol=1e-4, rtol=1e-4)
    for text, expected in zip(TEXTS, trained["tuned_codes"]):  # the unmerged adapter's codes
        assert torch.equal(greedy_codes(merged, processor, text), expected)


def test_base_weights_unchanged_on_disk_and_in_the_unloaded_model(trained):
    assert checkpoint_hashes() == trained["hashes"]
    reference = fresh_model().state_dict()
    loaded = PeftModel.from_pretrained(fresh_model(), trained["dir"] / "adapter").unload().state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)


def test_lora_targets_cover_the_fused_projections():
    model = fresh_model()
    names = [name for name, _ in model.named_modules()]

    def targeted(part: str) -> set[str]:
        return {name for name in names if re.fullmatch(LORA_TARGETS[part], name)}

    assert len(targeted("slow")) == 2 * 5 and all(n.startswith("text_model.") for n in targeted("slow"))
    assert len(targeted("fast")) == 2 * 5 and all(n.startswith("audio_decoder.") for n in targeted("fast"))
    assert targeted("both") == targeted("slow") | targeted("fast")
    assert "text_model.model.layers.0.attention.wqkv" in targeted("slow")
    with pytest.raises(ValueError, match="part must be one of"):
        lora_config("embeddings")


def test_gradient_accumulation_averages_the_micro_batches(processor, examples, tmp_path):
    """The model's loss is a per-batch mean, so the Trainer must divide by the accumulation steps."""
    model = fresh_model()
    with torch.no_grad():
        single = [model(**{key: value[None] for key, value in e.items()}).loss.item() for e in examples]
    args = training_arguments(
        tmp_path, max_steps=1, batch_size=1, gradient_accumulation_steps=2, logging_steps=1, disable_tqdm=True
    )
    _, history = finetune(
        model, processor, examples, args
    )  # the first step runs at learning rate 0 (warm-up)
    assert history[0]["loss"] == pytest.approx(sum(single) / 2, rel=1e-4)


def test_empty_training_set_is_refused_before_training(processor, tmp_path):
    with pytest.raises(ValueError, match="training set is empty"):
        finetune(fresh_model(), processor, [], training_arguments(tmp_path, max_steps=1))


def test_qlora_on_a_4bit_bitsandbytes_base_trains_on_cpu(processor, examples, tmp_path):
    """bitsandbytes >= 0.48 runs NF4 layers on the CPU (forward and backward for the adapters); the slow AR is
    quantized, the fast AR stays full precision (the package's skip rule)."""
    from transformers_fish_s2.quantization import bnb_config

    model = FishS2ForConditionalGeneration.from_pretrained(
        TINY, dtype=torch.float32, quantization_config=bnb_config(4, compute_dtype=torch.float32)
    )
    assert type(model.text_model.model.layers[0].attention.wqkv).__name__ == "Linear4bit"
    torch.manual_seed(0)
    args = training_arguments(
        tmp_path, max_steps=20, learning_rate=1e-2, batch_size=2, logging_steps=1, disable_tqdm=True
    )
    adapted, history = finetune(model, processor, examples, args, lora=lora_config(r=8, alpha=16))
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] <= 0.5 * losses[0], losses
    assert greedy_codes(adapted.eval(), processor, TEXTS[0]).shape[0] == 10


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_cli_finetune_writes_and_pushes_an_adapter(quantization, clips, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for i, (text, clip) in enumerate(zip(TEXTS, clips)):
        soundfile.write(data / f"clip{i}.wav", clip, 44100)
        (data / f"clip{i}.lab").write_text(text)
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: hub)
    out = tmp_path / "adapter"
    status = main(
        [
            "finetune",
            "--data",
            str(data),
            "--out",
            str(out),
            "--model",
            str(TINY),
            "--steps",
            "3",
            "--device",
            "cpu",
            "--quantization",
            quantization,
            "--push-to-hub",
            "someone/voice-lora",
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert (out / "adapter_model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert f"base_model: {TINY}" in card and 'from_pretrained(base, "someone/voice-lora")' in card
    assert [call[0] for call in hub.calls] == ["create_repo", "upload_folder"]
    remote = tmp_path / "hub" / "someone" / "voice-lora"
    assert {p.name for p in remote.iterdir()} == {p.name for p in out.iterdir()}
    reloaded = PeftModel.from_pretrained(fresh_model(), remote)
    assert any("lora_B" in name and p.abs().sum() > 0 for name, p in reloaded.named_parameters())


def test_cli_finetune_names_a_clip_without_transcript(clips, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    soundfile.write(data / "lonely.wav", clips[0], 44100)
    status = main(["finetune", "--data", str(data), "--out", str(tmp_path / "o"), "--model", str(TINY)])
    assert status == 1
    assert "lonely.wav' has no transcript" in capsys.readouterr().err


def test_cli_finetune_names_the_bad_file(clips, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    soundfile.write(data / "ok.wav", clips[0], 44100)
    (data / "ok.lab").write_text("fine")
    soundfile.write(data / "sub" / "tiny.wav", clips[0][:1000], 44100)
    (data / "sub" / "tiny.txt").write_text("too short")
    status = main(["finetune", "--data", str(data), "--out", str(tmp_path / "o"), "--model", str(TINY)])
    assert status == 1
    assert "sub/tiny.wav is 1000 samples long" in capsys.readouterr().err


def test_cli_finetune_refuses_an_empty_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    status = main(
        ["finetune", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--model", str(TINY)]
    )
    assert status == 1
    assert "has no audio files" in capsys.readouterr().err


def test_datasets_map_encodes_once_and_training_never_runs_the_codec(processor, clips, examples, tmp_path):
    paths = []
    for i, clip in enumerate(clips):
        paths.append(str(tmp_path / f"clip{i}.wav"))
        soundfile.write(paths[-1], clip, 44100)
    raw = datasets.Dataset.from_dict({"text": TEXTS, "audio": paths})
    train = raw.map(DatasetMapper(processor), remove_columns=raw.column_names)
    for row, example in zip(train, examples):
        assert all(torch.equal(torch.tensor(row[key]), value) for key, value in example.items())

    def no_codec(*args, **kwargs):
        raise AssertionError("the codec ran during training")

    original = processor.codec.encode
    processor.codec.encode = no_codec
    try:
        args = training_arguments(tmp_path / "t", max_steps=4, batch_size=1, disable_tqdm=True)  # 2 epochs
        finetune(fresh_model(), processor, train, args)
    finally:
        processor.codec.encode = original


def test_example_script_trains_saves_reloads_and_speaks(clips, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i, (text, clip) in enumerate(zip(TEXTS, clips)):
        soundfile.write(data / f"clip{i}.flac", clip, 44100)
        (data / f"clip{i}.lab").write_text(text)
    argv = ["--data", str(data), "--out", str(tmp_path / "out"), "--model", str(TINY), "--steps", "2"]
    sample = load_example("finetune_lora.py").main([*argv, "--text", TEXTS[1], "--max-new-tokens", "4"])
    audio, rate = soundfile.read(sample)
    assert rate == 44100 and 0 < len(audio) <= 4 * 2048
    assert (tmp_path / "out" / "encoded").is_dir() and (tmp_path / "out" / "adapter" / "README.md").is_file()
    assert "wrote" in capsys.readouterr().out
