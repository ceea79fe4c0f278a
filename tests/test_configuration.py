"""FishS2Config reads the official config.json as-is, exposes HF aliases, and rejects inconsistent configs."""

from __future__ import annotations

import json

import pytest
from conftest import INVENTORY, TINY
from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform

import transformers_fish_s2
from transformers_fish_s2 import (
    FishS2Config,
    FishS2FastTransformerConfig,
    FishS2ForConditionalGeneration,
    FishS2TextConfig,
)


def official_tiny() -> dict:
    """The tiny fixture's config.json, in the official schema."""
    return json.loads((TINY / "config.json").read_text())


def s2_pro() -> dict:
    """The released model's config values."""
    return json.loads((INVENTORY / "s2_pro_config.json").read_text())


def assert_has_values(config, expected: dict) -> None:
    """Every key of an official config dict is an attribute of ``config`` with the same value."""
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_has_values(getattr(config, key), value)
        elif key == "dtype":
            assert str(config.dtype).removeprefix("torch.") == value
        elif key != "transformers_version":
            assert getattr(config, key) == value, key


def test_reads_official_config_as_is_including_unused_keys():
    config = AutoConfig.from_pretrained(TINY)
    assert type(config) is FishS2Config
    assert isinstance(config.text_config, FishS2TextConfig)
    assert isinstance(config.audio_decoder_config, FishS2FastTransformerConfig)
    assert_has_values(config, official_tiny())
    # the MoE / audio-projector fields are unused but kept
    assert config.text_config.audio_hidden_dim == 128 and config.audio_decoder_config.router_gamma == 0.001


def test_save_round_trip_keeps_official_schema(tmp_path):
    FishS2Config.from_pretrained(TINY).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for section in ("text_config", "audio_decoder_config"):
        assert official_tiny()[section].items() <= saved[section].items(), section
    top = {
        k: v for k, v in official_tiny().items() if not isinstance(v, dict) and k != "transformers_version"
    }
    assert top.items() <= saved.items()
    assert_has_values(FishS2Config.from_pretrained(tmp_path), official_tiny())


def test_hf_aliases_read_and_write_the_official_fields():
    text = FishS2Config.from_pretrained(TINY).text_config
    aliases = {
        "hidden_size": "dim",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "num_key_value_heads": "n_local_heads",
        "max_position_embeddings": "max_seq_len",
        "rms_norm_eps": "norm_eps",
        "rope_theta": "rope_base",
    }
    for alias, official in aliases.items():
        assert getattr(text, alias) == getattr(text, official), alias
    assert text.head_dim == 16
    fast = FishS2FastTransformerConfig(
        hidden_size=48, text_dim=64, codebook_size=32, head_dim=12, n_head=4, n_local_heads=2
    )
    assert (fast.dim, fast.vocab_size) == (48, 32)
    assert "hidden_size" not in fast.to_dict()  # only official names are serialized


def test_defaults_are_the_real_s2_pro_config():
    config = FishS2Config()
    # `dtype` is the checkpoint's storage dtype, recorded when loading; a fresh config leaves it unset
    assert_has_values(config, {k: v for k, v in s2_pro().items() if k != "dtype"})
    assert (config.num_codebooks, config.codebook_size) == (10, 4096)
    assert config.get_text_config(decoder=True) is config.text_config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"audio_decoder_config": {"text_dim": 1024}},
            r"text_dim \(1024\) must equal text_config.dim \(2560\)",
        ),
        ({"semantic_end_token_id": 151678 + 1023}, r"holds 1024 ids but the codebook size .* is 4096"),
        (
            {"semantic_start_token_id": 155000, "semantic_end_token_id": 155000 + 4095},
            r"must lie inside the text vocabulary \[0, 155776\)",
        ),
        (
            {"eos_token_id": 200000},
            r"eos_token_id must be one integer token id in the text vocabulary \[0, 155776\), got 200000",
        ),
        ({"text_config": {"n_head": 30}}, r"n_head \(30\) must be a multiple of n_local_heads \(8\)"),
        ({"text_config": {"head_dim": 127}}, r"head_dim must be even"),
        ({"text_config": {"use_moe": True}}, r"mixture-of-experts .* not implemented"),
        ({"audio_decoder_config": {"n_layer": 0}}, r"n_layer must be a positive integer"),
        (
            {"audio_decoder_config": {"tie_word_embeddings": True}},
            r"tie_word_embeddings=True is not supported",
        ),
    ],
)
def test_inconsistent_configs_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FishS2Config(**kwargs)


def test_registration_is_idempotent():
    transformers_fish_s2.register_auto_classes()
    transformers_fish_s2.register_auto_classes()
    assert type(AutoConfig.for_model("fish_qwen3_omni")) is FishS2Config
    assert type(AutoConfig.for_model("fish_qwen3")) is FishS2TextConfig
    for auto_class in (AutoModel, AutoModelForTextToWaveform):
        assert auto_class._model_mapping[FishS2Config] is FishS2ForConditionalGeneration
