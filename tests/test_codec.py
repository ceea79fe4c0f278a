"""Codec (modded DAC): parity with the authors' outputs, loading, API contracts, full-size layout.

Parity tolerances follow tests/fixtures/s2-tiny-a/expected/README.md: codes exact, waveforms fp32
atol 1e-5 (they pass through tanh), latents atol 1e-4 relative to their max magnitude (they are sums
over long conv/transformer chains; measured diffs are ~1e-5 relative for the encoder output and
~3e-7 relative for the decoder input).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import INVENTORY, TINY, expected_tensors
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

from transformers_fish_s2 import FishS2CheckpointError
from transformers_fish_s2.codec import FishS2CodecConfig, FishS2CodecModel
from transformers_fish_s2.codec.checkpoint import load_codec_state_dict, read_codec_checkpoint

WAVEFORM_ATOL = 1e-5
LATENT_RTOL = 1e-4


@pytest.fixture(scope="module")
def codec() -> FishS2CodecModel:
    return FishS2CodecModel.from_pretrained(TINY)


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return expected_tensors("codec")


def assert_close_to_scale(actual: torch.Tensor, reference: torch.Tensor, name: str) -> None:
    diff = (actual - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert diff <= LATENT_RTOL * scale, f"{name}: max diff {diff} > {LATENT_RTOL} x scale {scale}"


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------

# The architecture values of the authors' fish_speech/configs/modded_dac_vq.yaml, as hydra would read it.
OFFICIAL_HYDRA = {
    "_target_": "fish_speech.models.dac.modded_dac.DAC",
    "sample_rate": 44100,
    "encoder_dim": 64,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1536,
    "decoder_rates": [8, 8, 4, 2],
    "encoder_transformer_layers": [0, 0, 0, 4],
    "decoder_transformer_layers": [4, 0, 0, 0],
    "transformer_general_config": {
        "_target_": "fish_speech.models.dac.modded_dac.ModelArgs",
        "_partial_": True,
        "block_size": 8192,
        "n_local_heads": -1,
        "head_dim": 64,
        "rope_base": 10000,
        "norm_eps": "1e-5",
        "dropout_rate": 0.1,
        "attn_dropout_rate": 0.1,
        "channels_first": True,
    },
    "quantizer": {
        "_target_": "fish_speech.models.dac.rvq.DownsampleResidualVectorQuantize",
        "input_dim": 1024,
        "n_codebooks": 9,
        "codebook_size": 1024,
        "codebook_dim": 8,
        "quantizer_dropout": 0.5,
        "downsample_factor": [2, 2],
        "semantic_codebook_size": 4096,
    },
}
_TRANSFORMER_MODULE = {
    "_target_": "fish_speech.models.dac.modded_dac.WindowLimitedTransformer",
    "causal": True,
    "window_size": 128,
    "input_dim": 1024,
    "config": {
        "_target_": "fish_speech.models.dac.modded_dac.ModelArgs",
        "block_size": 2048,
        "n_layer": 8,
        "n_head": 16,
        "dim": 1024,
        "intermediate_size": 3072,
        "n_local_heads": -1,
        "head_dim": 64,
        "rope_base": 10000,
        "norm_eps": "1e-5",
        "dropout_rate": 0.1,
        "attn_dropout_rate": 0.1,
        "channels_first": True,
    },
}
OFFICIAL_HYDRA["quantizer"]["post_module"] = OFFICIAL_HYDRA["quantizer"]["pre_module"] = _TRANSFORMER_MODULE


def test_defaults_are_the_official_config():
    default = FishS2CodecConfig()
    assert FishS2CodecConfig.from_hydra(OFFICIAL_HYDRA).to_dict() == default.to_dict()
    assert (default.sampling_rate, default.hop_length, default.frame_length) == (44100, 512, 2048)
    assert (
        default.latent_dim,
        default.num_codebooks,
        default.semantic_codebook_size,
        default.codebook_size,
    ) == (1024, 10, 4096, 1024)
    assert default.encoder_transformer_window_size == 512  # the authors' YAML never sets it
    assert default.quantizer_transformer_window_size == 128
    assert abs(default.frame_rate - 21.533203125) < 1e-9


def test_tiny_hydra_yaml_with_anchors():
    config = FishS2CodecConfig.from_codec_config_file(TINY / "codec_config.yaml")
    assert config.latent_dim == 64 and config.encoder_dim == 4 and config.decoder_dim == 64
    # pre_module is a YAML alias of post_module; both read from the anchored mapping
    assert (config.quantizer_transformer_layers, config.quantizer_transformer_heads) == (2, 4)
    assert (config.quantizer_transformer_head_dim, config.quantizer_transformer_window_size) == (16, 16)
    assert (config.encoder_transformer_head_dim, config.encoder_transformer_window_size) == (64, 512)
    assert (config.semantic_codebook_size, config.codebook_size, config.num_codebooks) == (64, 32, 10)
    assert config.norm_eps == 1e-5 and config.frame_length == 2048


def test_hydra_config_rejects_unknown_architecture_keys():
    bad = json.loads(json.dumps(OFFICIAL_HYDRA))
    bad["quantizer"]["downsample_dims"] = [512, 256]
    with pytest.raises(ValueError, match="quantizer.downsample_dims"):
        FishS2CodecConfig.from_hydra(bad)
    bad = json.loads(json.dumps(OFFICIAL_HYDRA))
    del bad["quantizer"]["pre_module"]  # the reference would use an identity there
    with pytest.raises(ValueError, match="pre_module"):
        FishS2CodecConfig.from_hydra(bad)
    bad = json.loads(json.dumps(OFFICIAL_HYDRA))
    bad["quantizer"]["input_dim"] = 512
    with pytest.raises(ValueError, match="quantizer.input_dim"):
        FishS2CodecConfig.from_hydra(bad)


def test_auto_classes_are_registered():
    assert isinstance(AutoConfig.for_model("fish_s2_codec"), FishS2CodecConfig)


# --------------------------------------------------------------------------------------------------
# Parity with the authors' codec (fixture s2-tiny-a)
# --------------------------------------------------------------------------------------------------


def test_encoder_output_matches(codec, expected):
    padded = expected["encoder_input_padded"][None]
    with torch.no_grad():
        latent = codec.encoder(padded)[0]
    assert_close_to_scale(latent, expected["encoder_output"], "encoder_output")


def test_codes_match_exactly(codec, expected):
    with torch.no_grad():
        out = codec.encode(expected["input_waveform"])  # [1, 88200]: not a multiple of 2048
    assert torch.equal(out.audio_codes[0], expected["codes"])
    assert out.audio_code_lengths.tolist() == [expected["codes"].shape[-1]]


def test_decoder_input_latent_matches(codec, expected):
    with torch.no_grad():
        latent = codec.quantizer.decode(codec._prepare_codes(expected["codes"][None]))[0]
    assert_close_to_scale(latent, expected["decoder_input_latent"], "decoder_input_latent")


@pytest.mark.parametrize(
    ("codes_key", "waveform_key"), [("codes", "decoded_waveform"), ("e2e_case2_codes", "e2e_case2_waveform")]
)
def test_decoded_waveform_matches(codec, expected, codes_key, waveform_key):
    codes = expected[codes_key][None].clone()
    with torch.no_grad():
        audio = codec.decode(codes).audio_values
    assert audio.shape == (1, 1, 2048 * codes.shape[-1])
    diff = (audio[0, 0] - expected[waveform_key]).abs().max().item()
    assert diff <= WAVEFORM_ATOL


def test_bf16_decode_stays_close_to_the_fp32_reference(expected):
    # the authors' CLI runs the codec in bf16; no bf16 reference exists, so bound the gap
    codec_bf16 = FishS2CodecModel.from_pretrained(TINY, dtype=torch.bfloat16)
    with torch.no_grad():
        audio = codec_bf16.decode(expected["codes"][None]).audio_values
    assert audio.dtype == torch.bfloat16
    diff = (audio[0, 0].float() - expected["decoded_waveform"]).abs().max().item()
    assert diff < 0.05  # measured 0.011 on a waveform of peak 0.59


def test_decode_leaves_callers_codes_untouched(codec, expected):
    codes = expected["e2e_case2_codes"][None].clone()
    assert (codes[:, 1:] >= codec.config.codebook_size).any(), (
        "fixture should contain ids the codec must clamp"
    )
    before = codes.clone()
    with torch.no_grad():
        codec.decode(codes)
        codec.streaming_decoder().decode_chunk(codes)
    assert torch.equal(codes, before)


# --------------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_e2e_decode(codec, expected) -> torch.Tensor:
    with torch.no_grad():
        return codec.decode(expected["e2e_case2_codes"][None]).audio_values


@pytest.mark.parametrize("schedule", [[1], [5], [17], [3, 1, 20, 2, 9]], ids=str)
def test_streaming_equals_full_decode(codec, expected, full_e2e_decode, schedule):
    codes = expected["e2e_case2_codes"][None]  # 34 frames > the tiny post_module window (16)
    full = full_e2e_decode
    stream = codec.streaming_decoder()
    chunks, start, i = [], 0, 0
    while start < codes.shape[-1]:
        size = schedule[i % len(schedule)]
        chunk = stream.decode_chunk(codes[..., start : start + size])
        assert chunk.shape[-1] == 2048 * min(size, codes.shape[-1] - start)
        chunks.append(chunk)
        start, i = start + size, i + 1
    diff = (torch.cat(chunks, dim=-1) - full).abs().max().item()
    assert diff <= WAVEFORM_ATOL
    assert stream.frames_decoded == codes.shape[-1]


def test_streaming_state_is_bounded_and_resettable(codec):
    codes = torch.randint(0, 32, (2, 10, 40))
    stream = codec.streaming_decoder(batch_size=2)

    def state_numel() -> int:
        values = stream._state._entries.values()
        return sum(
            t.numel()
            for v in values
            for t in (v if isinstance(v, tuple) else (v,))
            if isinstance(t, torch.Tensor)
        )

    first = stream.decode_chunk(codes[..., :4])
    for start in range(4, 20, 4):
        stream.decode_chunk(codes[..., start : start + 4])
    after_20 = state_numel()  # past the 16-frame window: every layer's context is full
    for start in range(20, 40, 4):
        stream.decode_chunk(codes[..., start : start + 4])
    assert state_numel() == after_20  # the carried context does not grow with the stream
    stream.reset()
    assert torch.equal(stream.decode_chunk(codes[..., :4]), first)
    with pytest.raises(ValueError, match="batch_size=2"):
        stream.decode_chunk(codes[:1, :, :1])


def test_no_buffers_sized_by_max_length(codec):
    # the reference registers a 32768² mask and a 327 680-position RoPE table per transformer
    assert list(codec.buffers()) == []


# --------------------------------------------------------------------------------------------------
# API contracts and errors
# --------------------------------------------------------------------------------------------------


def test_batched_encode_with_padding_mask_matches_single_items(codec, expected):
    wav = expected["input_waveform"][0]
    short = wav[:30000]
    batch = torch.zeros(2, 1, wav.shape[0])
    batch[0, 0] = wav
    batch[1, 0, : short.shape[0]] = short
    batch[1, 0, short.shape[0] :] = 0.3  # garbage in the padding must not leak into the codes
    mask = torch.zeros(2, wav.shape[0], dtype=torch.long)
    mask[0] = 1
    mask[1, : short.shape[0]] = 1
    before = batch.clone()
    with torch.no_grad():
        out = codec.encode(batch, padding_mask=mask)
        alone = codec.encode(short[None]).audio_codes[0]
    assert torch.equal(batch, before)
    assert out.audio_code_lengths.tolist() == [44, 15]  # ceil(88200/2048), ceil(30000/2048)
    assert torch.equal(out.audio_codes[0], expected["codes"])
    assert torch.equal(out.audio_codes[1, :, :15], alone)


@pytest.mark.parametrize(
    ("codes", "error", "message"),
    [
        (torch.zeros(10, 4, dtype=torch.long), ValueError, r"codes\[None\]"),
        (torch.zeros(1, 9, 4, dtype=torch.long), ValueError, r"\[batch, 10, frames\]"),
        (torch.zeros(1, 10, 4), TypeError, "integer"),
        (torch.full((1, 10, 4), -1), ValueError, ">= 0"),
    ],
    ids=["rank2", "9-codebooks", "float", "negative"],
)
def test_decode_rejects_bad_codes(codec, codes, error, message):
    with pytest.raises(error, match=message):
        codec.decode(codes)
    with pytest.raises(error, match=message):
        codec.streaming_decoder().decode_chunk(codes)


def test_encode_rejects_bad_audio(codec):
    with pytest.raises(ValueError, match="mono"):
        codec.encode(torch.zeros(1, 2, 4096))
    with pytest.raises(TypeError, match="float"):
        codec.encode(torch.zeros(1, 4096, dtype=torch.int16))
    with pytest.raises(ValueError, match="padding_mask"):
        codec.encode(torch.zeros(2, 4096), padding_mask=torch.ones(2, 100))


def test_empty_codes_decode_to_empty_audio(codec):
    assert codec.decode(torch.zeros(1, 10, 0, dtype=torch.long)).audio_values.shape == (1, 1, 0)


# --------------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------------


def _decode(model: FishS2CodecModel, codes: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(codes).audio_values


@pytest.fixture(scope="module")
def probe_codes() -> torch.Tensor:
    return torch.randint(0, 32, (1, 10, 6), generator=torch.Generator().manual_seed(0))


def test_save_pretrained_round_trip_with_subfolder(codec, probe_codes, tmp_path):
    codec.save_pretrained(tmp_path / "codec")
    assert {p.name for p in (tmp_path / "codec").iterdir()} == {"config.json", "model.safetensors"}
    assert json.loads((tmp_path / "codec" / "config.json").read_text())["model_type"] == "fish_s2_codec"
    reloaded = FishS2CodecModel.from_pretrained(tmp_path, subfolder="codec")
    assert torch.equal(_decode(reloaded, probe_codes), _decode(codec, probe_codes))
    assert isinstance(AutoModel.from_pretrained(tmp_path / "codec"), FishS2CodecModel)
    decoder_only = FishS2CodecModel.from_pretrained(tmp_path, subfolder="codec", decoder_only=True)
    assert decoder_only.encoder is None
    assert torch.equal(_decode(decoder_only, probe_codes), _decode(codec, probe_codes))


def test_decoder_only_from_codec_pth(codec, probe_codes):
    decoder_only = FishS2CodecModel.from_pretrained(TINY, decoder_only=True)
    full_params = sum(p.numel() for p in codec.parameters())
    assert sum(p.numel() for p in decoder_only.parameters()) < full_params
    assert not any(".in_proj." in name or "pre_module" in name for name, _ in decoder_only.named_parameters())
    assert torch.equal(_decode(decoder_only, probe_codes), _decode(codec, probe_codes))
    with pytest.raises(RuntimeError, match="decoder_only"):
        decoder_only.encode(torch.zeros(1, 2048))


def _respell(state_dict: dict, spelling: int) -> dict:
    """Rename every weight-norm pair to spelling 0 (parametrizations.weight.original0/1) or 1 (weight_g/v)."""
    pairs = [
        (".parametrizations.weight.original0", ".parametrizations.weight.original1"),
        (".weight_g", ".weight_v"),
    ]
    out = {}
    for key, value in state_dict.items():
        for source in pairs:
            for index, suffix in enumerate(source):
                if key.endswith(suffix):
                    key = key[: -len(suffix)] + pairs[spelling][index]
                    break
        out[key] = value
    return out


@pytest.mark.parametrize("spelling", [0, 1], ids=["parametrizations", "weight_g_v"])
def test_codec_pth_with_either_weight_norm_spelling_and_stale_buffers(codec, probe_codes, tmp_path, spelling):
    state = _respell(read_codec_checkpoint(TINY / "codec.pth"), spelling)
    state["quantizer.post_module.freqs_cis"] = torch.zeros(64, 8, 2, dtype=torch.bfloat16)
    state["quantizer.post_module.causal_mask"] = torch.ones(64, 64, dtype=torch.bool)
    torch.save(state, tmp_path / "codec.pth")
    shutil.copy(TINY / "codec_config.yaml", tmp_path)
    reloaded = FishS2CodecModel.from_pretrained(tmp_path)
    assert torch.allclose(_decode(reloaded, probe_codes), _decode(codec, probe_codes), atol=1e-6)


def test_codec_pth_with_codec_config_json_or_argument(codec, probe_codes, tmp_path):
    shutil.copy(TINY / "codec.pth", tmp_path)
    codec.config.to_json_file(tmp_path / "codec_config.json")
    assert torch.equal(
        _decode(FishS2CodecModel.from_pretrained(tmp_path), probe_codes), _decode(codec, probe_codes)
    )
    (tmp_path / "codec_config.json").unlink()
    with pytest.raises(FishS2CheckpointError, match="wrong shape"):  # falls back to the full-size defaults
        FishS2CodecModel.from_pretrained(tmp_path)
    from_arg = FishS2CodecModel.from_pretrained(tmp_path, codec_config=TINY / "codec_config.yaml")
    assert torch.equal(_decode(from_arg, probe_codes), _decode(codec, probe_codes))


def test_codec_pth_missing_or_misshapen_weights_are_named(tmp_path):
    state = read_codec_checkpoint(TINY / "codec.pth")
    state.pop("decoder.model.0.conv.bias")
    state["quantizer.quantizer.quantizers.0.codebook.weight"] = torch.zeros(33, 8)
    state["decoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "codec.pth")
    shutil.copy(TINY / "codec_config.yaml", tmp_path)
    with pytest.raises(FishS2CheckpointError) as info:
        FishS2CodecModel.from_pretrained(tmp_path)
    message = str(info.value)
    assert "1 tensor(s) missing from the checkpoint:\n    decoder.model.0.conv.bias\n" in message
    assert "1 unexpected tensor(s) the model has no place for:\n    decoder.extra.weight\n" in message
    assert (
        "quantizer.quantizer.quantizers.0.codebook.weight: checkpoint [33, 8], model expects [32, 8]"
        in message
    )


def test_saved_codec_with_an_unexpected_or_missing_tensor_is_refused(codec, tmp_path):
    """The codec saved by save_pretrained goes through the same strict check as codec.pth and the model."""
    codec.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({**weights, "decoder.extra.weight": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(
        FishS2CheckpointError,
        match=r"unexpected tensor\(s\) the model has no place for:\n    decoder.extra.weight",
    ):
        FishS2CodecModel.from_pretrained(tmp_path)
    weights.pop("decoder.model.0.conv.bias")
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(
        FishS2CheckpointError, match=r"missing from the checkpoint:\n    decoder.model.0.conv.bias"
    ):
        FishS2CodecModel.from_pretrained(tmp_path)


class _NotATensor:
    pass


def test_codec_pth_that_weights_only_refuses(tmp_path):
    torch.save({"weight": _NotATensor()}, tmp_path / "codec.pth")
    with pytest.raises(ValueError, match=r"weights_only=True, mmap=True"):
        FishS2CodecModel.from_pretrained(tmp_path)


def test_missing_codec_gives_clear_error(tmp_path):
    with pytest.raises(OSError, match="No codec found"):
        FishS2CodecModel.from_pretrained(tmp_path)
    shutil.copy(TINY / "config.json", tmp_path)  # the Dual-AR model's config, not a codec
    with pytest.raises(OSError, match="fish_qwen3_omni"):
        FishS2CodecModel.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------------
# Full-size layout (meta device): matches the official codec.pth inventory
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inventory() -> dict[str, dict]:
    return json.loads((INVENTORY / "codec_state_dict_inventory.json").read_text())["tensors"]


def _meta_state(inventory: dict[str, dict]) -> dict[str, torch.Tensor]:
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "bool": torch.bool}
    return {k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta") for k, v in inventory.items()}


def test_full_size_parameter_counts(inventory):
    with torch.device("meta"):
        model = FishS2CodecModel(FishS2CodecConfig())
    counts = {
        part: sum(p.numel() for p in getattr(model, part).parameters())
        for part in ("encoder", "quantizer", "decoder")
    }
    magnitudes = sum(v["shape"][0] for k, v in inventory.items() if k.endswith(("original0", "weight_g")))
    total = sum(counts.values())
    # the authors' config gives ≈76.9 M / 260.5 M / 54.1 M, ≈391 M total counting g and v separately
    assert (
        total + magnitudes == sum(torch.Size(v["shape"]).numel() for v in inventory.values()) == 391_430_530
    )
    for part, spec in (("encoder", 76.9e6), ("quantizer", 260.5e6), ("decoder", 54.1e6)):
        assert abs(counts[part] - spec) < 0.1e6, part


@pytest.mark.parametrize("spelling", [None, 0, 1], ids=["as-inventoried", "parametrizations", "weight_g_v"])
def test_full_size_keys_and_shapes_match_inventory(inventory, spelling):
    state = _meta_state(inventory)
    if spelling is not None:
        state = _respell(state, spelling)
    for module in ("encoder.block.4.block.5", "quantizer.pre_module", "quantizer.post_module"):
        state[f"{module}.freqs_cis"] = torch.empty(4096, 32, 2, dtype=torch.bfloat16, device="meta")
        state[f"{module}.causal_mask"] = torch.empty(4096, 4096, dtype=torch.bool, device="meta")
    with torch.device("meta"):
        model = FishS2CodecModel(FishS2CodecConfig())
    load_codec_state_dict(model, state)  # raises on any missing, unexpected or misshapen key
    with torch.device("meta"):
        decoder_only = FishS2CodecModel(FishS2CodecConfig(decoder_only=True))
    load_codec_state_dict(decoder_only, state)
