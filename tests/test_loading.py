"""Stock `from_pretrained` loads the official layouts; bad checkpoints fail naming the key and file."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import TINY, TINY_SHARDED
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForTextToWaveform

from transformers_fish_s2 import FishS2CheckpointError, FishS2Config, FishS2ForConditionalGeneration


def official_keys() -> set[str]:
    """The tensor names of the tiny checkpoint in the official layout."""
    return set(load_file(TINY / "model.safetensors"))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_single_file_load_uses_official_keys_and_checkpoint_dtype():
    model = FishS2ForConditionalGeneration.from_pretrained(TINY)
    assert model.dtype == torch.bfloat16  # dtype="auto": the file's
    assert set(model.state_dict()) == official_keys()
    weights = load_file(TINY / "model.safetensors")
    assert all(torch.equal(tensor, weights[key]) for key, tensor in model.state_dict().items())


def test_sharded_checkpoint_loads_identical_weights():
    single = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    sharded = FishS2ForConditionalGeneration.from_pretrained(
        TINY_SHARDED, dtype=torch.float32, device_map="cpu"
    )
    assert sharded.dtype == torch.float32
    assert_same_weights(single, sharded)


@pytest.mark.parametrize("auto_class", [AutoModel, AutoModelForTextToWaveform])
def test_auto_classes_load_the_official_layout(auto_class):
    model = auto_class.from_pretrained(TINY_SHARDED, device_map="auto")
    assert type(model) is FishS2ForConditionalGeneration


@torch.no_grad()
def test_save_pretrained_round_trip_keeps_layout_and_logits(tmp_path):
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    ids = torch.tensor([[385, 82, 88, 419, 450, 386]])
    codes = torch.randint(0, 32, (1, 10, 6))
    model.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "model.safetensors")) == official_keys()
    saved_config = json.loads((tmp_path / "config.json").read_text())
    assert saved_config["model_type"] == "fish_qwen3_omni" and saved_config["text_config"]["n_layer"] == 2
    reloaded = FishS2ForConditionalGeneration.from_pretrained(tmp_path)
    assert_same_weights(model, reloaded)
    assert torch.equal(
        model(input_ids=ids, audio_codes=codes).logits, reloaded(input_ids=ids, audio_codes=codes).logits
    )

    model.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == official_keys() and len(set(index["weight_map"].values())) > 1
    assert_same_weights(model, FishS2ForConditionalGeneration.from_pretrained(tmp_path / "sharded"))


@torch.no_grad()
def test_untied_head_is_saved_and_loaded_as_text_model_lm_head(tmp_path):
    config = FishS2Config.from_pretrained(TINY)
    config.text_config.tie_word_embeddings = False
    model = FishS2ForConditionalGeneration(config).eval()
    assert "text_model.lm_head.weight" in model.state_dict()
    model.save_pretrained(tmp_path)
    reloaded = FishS2ForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(reloaded.text_model.lm_head.weight, model.text_model.lm_head.weight)
    hidden = torch.randn(1, 3, 64)
    assert torch.equal(reloaded.text_model.compute_logits(hidden), model.text_model.lm_head(hidden))
    # the official tied checkpoint has no head for an untied config: that is an error, not a random head
    shutil.copy(TINY / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(
        FishS2CheckpointError, match=r"missing from the checkpoint:\n    text_model.lm_head.weight"
    ):
        FishS2ForConditionalGeneration.from_pretrained(tmp_path)


def corrupted_copy(tmp_path, edit) -> None:
    """A copy of the single-file fixture whose tensors went through ``edit(dict) -> dict``."""
    shutil.copy(TINY / "config.json", tmp_path / "config.json")
    save_file(
        edit(load_file(TINY / "model.safetensors")), tmp_path / "model.safetensors", metadata={"format": "pt"}
    )


def test_missing_tensor_is_an_error_naming_the_key(tmp_path):
    key = "text_model.model.layers.1.attention.wqkv.weight"
    corrupted_copy(tmp_path, lambda weights: {k: v for k, v in weights.items() if k != key})
    with pytest.raises(
        FishS2CheckpointError, match=rf"1 tensor\(s\) missing from the checkpoint:\n    {key}"
    ):
        FishS2ForConditionalGeneration.from_pretrained(tmp_path)


def test_unexpected_tensor_is_an_error_naming_key_and_file(tmp_path):
    corrupted_copy(tmp_path, lambda weights: {**weights, "audio_decoder.extra.weight": torch.zeros(3)})
    with pytest.raises(FishS2CheckpointError, match=r"audio_decoder.extra.weight \(in model.safetensors\)"):
        FishS2ForConditionalGeneration.from_pretrained(tmp_path)


def test_wrong_shape_is_an_error_naming_key_file_and_shapes(tmp_path):
    key = "audio_decoder.output.weight"
    corrupted_copy(tmp_path, lambda weights: {**weights, key: weights[key][:32]})
    message = rf"{key} \(in model.safetensors\): checkpoint \[32, 48\], model expects \[64, 48\]"
    with pytest.raises(FishS2CheckpointError, match=message):
        FishS2ForConditionalGeneration.from_pretrained(tmp_path)


def test_truncated_safetensors_file_is_named(tmp_path):
    shutil.copy(TINY / "config.json", tmp_path / "config.json")
    data = (TINY / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        FishS2CheckpointError, match=r"model.safetensors is not a readable safetensors file .*truncated"
    ):
        FishS2ForConditionalGeneration.from_pretrained(tmp_path)


def test_broken_sharded_checkpoint_names_the_shard(tmp_path):
    shutil.copytree(TINY_SHARDED, tmp_path / "ckpt")
    shard = tmp_path / "ckpt" / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(
        FishS2CheckpointError, match=r"model-00002-of-00002.safetensors is not a readable safetensors"
    ):
        FishS2ForConditionalGeneration.from_pretrained(tmp_path / "ckpt")
    shard.unlink()
    with pytest.raises(
        FishS2CheckpointError, match=r"model-00002-of-00002.safetensors is listed in .* does not exist"
    ):
        FishS2ForConditionalGeneration.from_pretrained(tmp_path / "ckpt")
