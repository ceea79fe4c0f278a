"""Fine-tuning: training examples in the authors' layout, their training loss, the collator, bad data.

The reference values come from the authors' training forward on the tiny fixture
(tests/fixtures/s2-tiny-a-training: script, inputs and outputs, manifest).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import pytest
import soundfile
import torch
from conftest import EXPECTED, FIXTURES
from safetensors.torch import load_file

from transformers_fish_s2.training import (
    IGNORE_INDEX,
    DatasetMapper,
    FishS2DataCollator,
    build_training_example,
    prepare_examples,
)

TRAINING = FIXTURES / "s2-tiny-a-training"


@pytest.fixture(scope="module")
def reference():
    return json.loads((TRAINING / "training_loss.json").read_text()), load_file(
        TRAINING / "training_loss.safetensors"
    )


@pytest.fixture(scope="module")
def example(processor, reference):
    record, tensors = reference
    return build_training_example(
        processor,
        record["text"],
        tensors["target_codes"],
        references={"text": record["reference_text"], "codes": tensors["reference_codes"]},
    )


@pytest.fixture(scope="module")
def waveform():
    audio, rate = soundfile.read(EXPECTED / "test_waveform_44k1_pcm16.wav", dtype="float32")
    assert rate == 44100
    return audio


def test_example_has_the_authors_layout(example, reference):
    """The authors' matrices are shifted ([1 + C, T-1]: inputs t, labels t+1); ours are unshifted [T]."""
    _, tensors = reference
    tokens, labels = tensors["tokens"], tensors["labels"]
    assert torch.equal(example["input_ids"][:-1], tokens[0])
    assert torch.equal(example["audio_codes"][:, :-1], tokens[1:])
    assert torch.equal(example["labels"][1:], labels[0])
    # codebook targets: the codes of every labelled semantic position
    semantic = (labels[0] >= 419) & (labels[0] <= 482)
    assert torch.equal(example["audio_codes"][:, 1:][:, semantic], labels[1:][:, semantic])
    assert torch.equal(example["attention_mask"], torch.ones_like(example["input_ids"]))


def test_only_the_assistant_turn_is_labelled(example, processor):
    labelled = example["labels"] != IGNORE_INDEX
    first = int(labelled.nonzero()[0])
    assert labelled[first:].all()  # one contiguous span to the end
    tokenizer = processor.tokenizer
    assert tokenizer.convert_ids_to_tokens(int(example["input_ids"][first])) == "<|voice|>"
    assert tokenizer.decode(example["input_ids"][-2:]) == "<|im_end|>\n"
    assert int(labelled.sum()) == 12 + 3  # frames, <|voice|>, <|im_end|>, \n


def _unscaled_embeddings(model, example):
    """The authors' training-path inputs: semantic positions NOT divided by sqrt(num_codebooks + 1)."""
    ids, codes = example["input_ids"][None], example["audio_codes"][None]
    embeds = model.embed_inputs(ids, codes)
    semantic = ((ids >= 419) & (ids <= 482))[..., None]
    return torch.where(semantic, embeds * math.sqrt(model.config.num_codebooks + 1), embeds)


@torch.no_grad()
def test_losses_equal_the_authors_training_forward(model, example, reference):
    record, _ = reference
    out = model(
        inputs_embeds=_unscaled_embeddings(model, example),
        audio_codes=example["audio_codes"][None],
        labels=example["labels"][None],
    )
    assert out.slow_loss.item() == pytest.approx(record["slow_loss"], abs=1e-5)
    assert out.fast_loss.item() == pytest.approx(record["fast_loss"], abs=1e-5)
    assert out.loss.item() == pytest.approx(record["slow_loss"] + record["fast_loss"], abs=2e-5)
    assert out.fast_logits.shape[0] == record["labelled_frames"]


@torch.no_grad()
def test_we_train_with_the_inference_embedding_rule(model, example, reference):
    """Default inputs use the inference rule, so the loss differs from the authors' training path on purpose."""
    record, _ = reference
    batch = {key: value[None] for key, value in example.items()}
    out = model(**batch)
    scaled = model.embed_inputs(batch["input_ids"], batch["audio_codes"])
    assert torch.equal(
        model(inputs_embeds=scaled, audio_codes=batch["audio_codes"], labels=batch["labels"]).loss, out.loss
    )
    assert abs(out.slow_loss.item() - record["slow_loss"]) > 0.01


def test_collator_pads_right_and_masks_padding(processor, example):
    short = {key: value[..., :-5] for key, value in example.items()}
    batch = FishS2DataCollator.from_processor(processor)([example, {k: v.tolist() for k, v in short.items()}])
    length = len(example["input_ids"])
    assert batch["input_ids"].shape == (2, length) and batch["audio_codes"].shape == (2, 10, length)
    assert torch.equal(batch["input_ids"][1, -5:], torch.full((5,), processor.tokenizer.pad_token_id))
    assert torch.equal(batch["labels"][1, -5:], torch.full((5,), IGNORE_INDEX))
    assert batch["attention_mask"][1].tolist() == [1] * (length - 5) + [0] * 5
    assert not batch["audio_codes"][1, :, -5:].any()
    assert torch.equal(batch["labels"][0], example["labels"])


@torch.no_grad()
def test_padding_does_not_change_an_examples_loss(model, processor, example):
    short = {key: value[..., :-5] for key, value in example.items()}
    single = model(**{key: value[None] for key, value in short.items()})
    padded = model(**FishS2DataCollator.from_processor(processor)([short, example]))
    alone = model(**{key: value[None] for key, value in example.items()})
    # the batch loss averages over all labelled tokens of both rows; rebuild it from the single-row losses
    n_short, n_full = int((short["labels"][1:] != -100).sum()), int((example["labels"][1:] != -100).sum())
    expected = (single.slow_loss * n_short + alone.slow_loss * n_full) / (n_short + n_full)
    assert padded.slow_loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_collator_rejects_mismatched_lengths(processor, example):
    broken = dict(example, labels=example["labels"][:-1])
    with pytest.raises(ValueError, match="same length"):
        FishS2DataCollator.from_processor(processor)([broken])


# ---------------------------------------------------------------------------------------------------------
# Bad data fails before training, naming the item
# ---------------------------------------------------------------------------------------------------------


def test_prepare_examples_builds_one_example_per_clip(processor, waveform):
    examples = prepare_examples(
        processor, ["one", "two"], [waveform[:30000], waveform[40000:80000]], sampling_rate=44100
    )
    frames = [int(((e["input_ids"] >= 419) & (e["input_ids"] <= 482)).sum()) for e in examples]
    assert frames == [math.ceil(30000 / 2048), math.ceil(40000 / 2048)]


def test_clip_shorter_than_one_frame(processor, waveform):
    with pytest.raises(ValueError, match=r"audios\[1\].*shorter than one codec frame"):
        prepare_examples(processor, ["a", "b"], [waveform[:4096], waveform[:2047]], sampling_rate=44100)


def test_control_tokens_in_a_transcript(processor, waveform):
    with pytest.raises(ValueError, match=r"texts\[0\].*reserved token '<\|im_end\|>'"):
        prepare_examples(processor, ["stop<|im_end|>here"], [waveform[:4096]], sampling_rate=44100)


def test_mismatched_list_lengths(processor, waveform):
    with pytest.raises(ValueError, match="texts has 2 items but audios has 1"):
        prepare_examples(processor, ["a", "b"], [waveform[:4096]], sampling_rate=44100)


def test_empty_set(processor):
    with pytest.raises(ValueError, match="training set is empty"):
        prepare_examples(processor, [], [])


def test_other_rates_are_resampled_with_a_log_line(processor, waveform, tmp_path, caplog):
    path = tmp_path / "clip16k.wav"
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    soundfile.write(path, tone, 16000)
    with caplog.at_level(logging.INFO, logger="transformers_fish_s2.training.examples"):
        (example,) = prepare_examples(processor, ["resampled"], [str(path)])
    assert "audios[0]: resampling from 16000 Hz to 44100 Hz" in caplog.text
    frames = int(((example["input_ids"] >= 419) & (example["input_ids"] <= 482)).sum())
    assert frames == math.ceil(44100 / 2048)


def test_errors_come_before_any_clip_is_encoded(processor, waveform, monkeypatch):
    calls = []
    monkeypatch.setattr(processor.codec, "encode", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match=r"audios\[2\]"):
        prepare_examples(
            processor,
            ["a", "b", "c"],
            [waveform[:4096], waveform[:4096], waveform[:100]],
            sampling_rate=44100,
        )
    assert calls == []


def test_reference_files_match_their_manifest():
    manifest = json.loads((TRAINING / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert hashlib.sha256((TRAINING / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert (
        manifest["generator"]["script_sha256"]
        == hashlib.sha256((TRAINING / "make_training_loss.py").read_bytes()).hexdigest()
    )


def test_a_reference_clip_conditions_the_example_but_is_not_learnt(processor, waveform):
    reference = {"text": "The reference voice.", "audio": waveform[20000:40000], "sampling_rate": 44100}
    (example,) = prepare_examples(
        processor, ["Cloned words."], [waveform[:8192]], sampling_rate=44100, references=reference
    )
    semantic = (example["input_ids"] >= 419) & (example["input_ids"] <= 482)
    labelled = example["labels"] != IGNORE_INDEX
    prompt_ids = processor(text="x", references=reference)["input_ids"][0]
    n_reference = int(((prompt_ids >= 419) & (prompt_ids <= 482)).sum())
    assert n_reference > 0 and int((semantic & ~labelled).sum()) == n_reference  # in the masked prompt
    assert int((semantic & labelled).sum()) == 8192 // 2048  # only the clip's frames are targets


@pytest.mark.parametrize("form", ["array_22050", "bytes", "path"])
def test_dataset_mapper_accepts_the_datasets_audio_forms(processor, waveform, tmp_path, form):
    path = tmp_path / "clip.wav"
    soundfile.write(path, waveform[:30000], 44100)
    audio = {
        "array_22050": {"array": waveform[:30000:2], "sampling_rate": 22050},
        "bytes": {"bytes": path.read_bytes(), "path": None},
        "path": str(path),
    }[form]
    row = DatasetMapper(processor)({"text": "hello world", "audio": audio})
    assert set(row) == {"input_ids", "audio_codes", "attention_mask", "labels"}
    frames = sum(419 <= token <= 482 for token in row["input_ids"])
    assert frames == math.ceil(30000 / 2048)
