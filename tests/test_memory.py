"""The memory estimator against measured bytes: the tiny fixture loaded for real (every dtype and quantization
scheme), the full-size model on the meta device (and the official tensor inventory), full-size layer shapes
quantized for real, the KV caches transformers allocates, and the codec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import INVENTORY, TINY
from torch import nn

from transformers_fish_s2 import FishS2Config, FishS2ForConditionalGeneration
from transformers_fish_s2.codec import FishS2CodecModel
from transformers_fish_s2.memory import (
    MemoryEstimate,
    estimate_memory,
    format_memory_table,
    kv_cache_bytes,
    linear_weight_bytes,
    measure_memory,
)
from transformers_fish_s2.quantization import bnb_config, quantization_config

DOCS = Path(__file__).parents[1] / "docs" / "quantization.md"

# (dtype, quantization) combinations loaded from the tiny fixture and measured.
TINY_CASES = [
    pytest.param(torch.bfloat16, None, id="bf16"),
    pytest.param(torch.float32, None, id="fp32"),
    pytest.param(torch.float16, None, id="fp16"),
    pytest.param(torch.bfloat16, "bnb-8bit", id="bnb-8bit"),
    pytest.param(torch.bfloat16, "bnb-4bit", id="bnb-4bit-nf4-double-quant"),
    pytest.param(
        torch.bfloat16, bnb_config(4, double_quant=False, bnb_4bit_quant_type="fp4"), id="bnb-4bit-fp4"
    ),
    pytest.param(torch.bfloat16, "quanto-int8", id="quanto-int8"),
    pytest.param(torch.bfloat16, "quanto-int4", id="quanto-int4"),
    pytest.param(torch.bfloat16, bnb_config(8, skip_modules=[]), id="bnb-8bit-fast-AR-too"),
]


@pytest.mark.parametrize(("dtype", "quantization"), TINY_CASES)
def test_estimate_equals_measured_bytes_on_tiny_fixture(dtype, quantization):
    if quantization is not None:
        pytest.importorskip("bitsandbytes" if "bnb" in str(quantization) else "optimum.quanto")
    model = FishS2ForConditionalGeneration.from_pretrained(
        TINY, dtype=dtype, quantization_config=quantization_config(quantization, compute_dtype=dtype)
    )
    # Measured right after loading: on AVX512-BF16 CPUs bitsandbytes repacks 4-bit weights at the first forward.
    measured = measure_memory(model)
    estimate = estimate_memory(TINY, dtype=dtype, quantization=quantization)
    assert (estimate.slow_weights, estimate.fast_weights) == (
        measured["text_model"],
        measured["audio_decoder"],
    )


def test_estimate_of_a_saved_quantized_checkpoint_uses_its_quantization_config(tmp_path):
    pytest.importorskip("bitsandbytes")
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, quantization_config=bnb_config(4))
    model.save_pretrained(tmp_path)
    reloaded = FishS2ForConditionalGeneration.from_pretrained(tmp_path)
    estimate = estimate_memory(tmp_path)
    assert estimate.quantization == "bnb-4bit (nf4, double quant)"
    assert estimate.slow_weights + estimate.fast_weights == sum(measure_memory(reloaded).values())
    assert estimate_memory(tmp_path, quantization="none").slow_weights > estimate.slow_weights


def test_full_size_meta_model_matches_estimate_and_official_inventory():
    inventory = json.loads((INVENTORY / "model_state_dict_inventory.json").read_text())["tensors"]
    official = {"text_model": 0, "audio_decoder": 0}
    for key, entry in inventory.items():
        official[key.split(".", 1)[0]] += torch.Size(entry["shape"]).numel()
    # the released checkpoint's tensor inventory
    assert official == {"text_model": 4_032_298_496, "audio_decoder": 529_553_920}

    for dtype in (torch.bfloat16, torch.float32):
        with torch.device("meta"):
            model = FishS2ForConditionalGeneration(FishS2Config()).to(dtype)
        measured = measure_memory(model)
        estimate = estimate_memory(None, dtype=dtype, codec="none")
        assert estimate.slow_weights == measured["text_model"] == official["text_model"] * dtype.itemsize
        assert (
            estimate.fast_weights == measured["audio_decoder"] == official["audio_decoder"] * dtype.itemsize
        )
        assert estimate.codec_weights == 0


def _quantize_like_transformers(weight: torch.Tensor, scheme: str) -> nn.Module:
    """One linear layer converted the way transformers' loaders do it (module built empty, weight set, then
    quantized), without building a 4.5B-parameter model."""
    out_features, in_features = weight.shape
    if scheme.startswith("bnb"):
        import bitsandbytes as bnb

        if scheme == "bnb-8bit":
            layer = bnb.nn.Linear8bitLt(in_features, out_features, bias=False, has_fp16_weights=False)
            layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False).to("cpu")
        else:
            layer = bnb.nn.Linear4bit(
                in_features, out_features, bias=False, compute_dtype=weight.dtype, quant_type="nf4",
                compress_statistics=True, device="meta",
            )  # fmt: skip
            layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, **layer.weight.__dict__).to("cpu")
        return layer
    from optimum.quanto import QLinear, qint4, qint8

    qtype = {"quanto-int8": qint8, "quanto-int4": qint4}[scheme]
    layer = QLinear(in_features, out_features, bias=False, dtype=weight.dtype, weights=qtype, device="meta")
    layer.weight = nn.Parameter(weight, requires_grad=False)
    layer.input_scale, layer.output_scale = torch.ones(()), torch.ones(())  # as transformers sets them
    layer.freeze()
    return layer


@pytest.mark.parametrize("scheme", ["bnb-8bit", "bnb-4bit", "quanto-int8", "quanto-int4"])
def test_quantized_bytes_of_full_size_layer_shapes(scheme):
    """The per-layer formulas depend on the shape (bnb blocks, quanto group size and packing); check each
    distinct input width of the real model (wqkv 2560, wo 4096, w2 9728) with its real output width."""
    pytest.importorskip("bitsandbytes" if scheme.startswith("bnb") else "optimum.quanto")
    generator = torch.Generator().manual_seed(0)
    for shape in [(6144, 2560), (2560, 4096), (2560, 9728)]:
        weight = torch.randn(shape, generator=generator).to(torch.bfloat16)
        layer = _quantize_like_transformers(weight, scheme)
        assert sum(measure_memory(nn.ModuleDict({"layer": layer})).values()) == linear_weight_bytes(
            shape, scheme, torch.bfloat16
        ), shape


def test_kv_cache_bytes_equal_the_caches_the_model_allocates():
    model = FishS2ForConditionalGeneration.from_pretrained(TINY)
    config, slots, batch = model.config, 300, 2
    from transformers.cache_utils import StaticCache

    slow = StaticCache(config=config.text_config, max_cache_len=slots)
    slow.early_initialization(
        batch,
        config.text_config.n_local_heads,
        config.text_config.head_dim,
        torch.bfloat16,
        torch.device("cpu"),
    )
    fast = model.audio_decoder.make_fast_cache(batch)
    allocated = sum(
        t.numel() * t.element_size()
        for cache in (slow, fast)
        for layer in cache.layers
        for t in (layer.keys, layer.values)
    )
    assert kv_cache_bytes(config, slots, batch_size=batch, dtype=torch.bfloat16) == allocated
    assert estimate_memory(TINY, max_tokens=slots, batch_size=batch).kv_cache == allocated


@pytest.mark.parametrize("part", ["full", "decoder"])
def test_codec_estimate_equals_loaded_tiny_codec(part):
    codec = FishS2CodecModel.from_pretrained(TINY, decoder_only=part == "decoder")  # reads codec_config.yaml
    estimate = estimate_memory(TINY, codec=part, codec_dtype=codec.dtype)
    assert estimate.codec_weights == sum(measure_memory(codec).values())


def test_estimate_fields_table_and_totals():
    estimate = estimate_memory(None, quantization="bnb-4bit", max_tokens=8192)
    assert isinstance(estimate, MemoryEstimate)
    assert estimate.total == sum(v for k, v in estimate.as_dict().items() if k != "total")
    assert estimate.quantization == "bnb-4bit (nf4, double quant)"
    table = estimate.to_table()
    assert f"{estimate.total:,}" in table and "KV cache (8192 tokens x 1)" in table
    # Quantization shrinks only the slow AR by default; the fast AR and KV cache are unchanged.
    plain = estimate_memory(None, max_tokens=8192)
    assert estimate.slow_weights < plain.slow_weights / 2.5
    assert (estimate.fast_weights, estimate.kv_cache) == (plain.fast_weights, plain.kv_cache)
    assert estimate_memory(None, dtype="fp32").slow_weights == 2 * plain.slow_weights


def test_docs_table_is_the_estimators_output():
    """docs/quantization.md shows the estimator's table for the released model; regenerate it if this fails."""
    estimates = [
        estimate_memory(None, quantization=scheme, max_tokens=tokens)
        for scheme in (None, "bnb-8bit", "bnb-4bit")
        for tokens in (2048, 8192)
    ]
    assert format_memory_table(estimates) in DOCS.read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "int3"}, "dtype must be one of"),
        ({"codec_dtype": torch.int8}, "codec_dtype must be one of"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"batch_size": 1.5}, "batch_size must be a positive integer"),
        ({"quantization": "8bit"}, "unknown quantization scheme '8bit'"),
        ({"codec": "half"}, "codec must be one of full, decoder, none"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        estimate_memory(None, **kwargs)


def test_bad_config_argument():
    with pytest.raises(TypeError, match="config_or_path must be"):
        estimate_memory(42)
