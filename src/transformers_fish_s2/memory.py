"""How much memory Fish S2 needs, computed from its config without loading weights.

:func:`estimate_memory` builds the model (and the codec) on the meta device and adds up, per tensor, the bytes
the loaded model will hold: unquantized tensors at the compute dtype; linear layers that the quantizer converts
(the same skip rule and the same module test transformers applies) at the size of their quantized storage,
quantization state included (bitsandbytes LLM.int8 row scales, NF4/FP4 block absmax and code tables with the
nested ones of double quantization, quanto scales/shifts and its two scalar buffers per layer). Add the KV caches
for ``max_tokens`` slots and you have the resident bytes of model + codec + caches. Activations, the logits,
the CUDA context and allocator slack come on top (``benchmarks/gpu_quantization_check.py`` measures them).

:func:`measure_memory` counts the same things on a real model (each tensor's storage, quantization state
included), so the two can be compared exactly; the tests do.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import BitsAndBytesConfig, QuantoConfig
from transformers.quantizers.auto import AutoQuantizationConfig
from transformers.quantizers.quantizers_utils import should_convert_module
from transformers.utils.quantization_config import QuantizationConfigMixin

from .codec import FishS2CodecConfig, FishS2CodecModel
from .modeling.configuration_fish_s2 import FishS2Config
from .modeling.modeling_fish_s2 import FishS2ForConditionalGeneration
from .modeling.quantization_defaults import skip_modules_of
from .quantization import quantization_config
from .validation import parse_dtype

CODEC_PARTS = ("full", "decoder", "none")

_BNB_4BIT_BLOCKSIZE = 64  # bitsandbytes Params4bit: one absmax per 64 weights
_BNB_NESTED_BLOCKSIZE = 256  # double quantization: one fp32 absmax per 256 absmax values
_BNB_4BIT_CODE_BYTES = 16 * 4  # the 16-entry fp32 NF4/FP4 code table, one per layer
_BNB_NESTED_CODE_BYTES = 256 * 4  # the 256-entry fp32 code of the nested (8-bit) absmax quantization
_QUANTO_SCALAR_BUFFERS_BYTES = 2 * 4  # every QLinear registers fp32 input_scale and output_scale
_QUANTO_BITS = {"int8": 8, "float8": 8, "int4": 4, "int2": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes held by Fish S2 for one configuration (see :func:`estimate_memory`).

    ``slow_weights`` are the ``text_model`` tensors, ``fast_weights`` the ``audio_decoder`` tensors (which, as in
    the checkpoint, include the codebook embedding table that feeds the slow AR's input), ``codec_weights`` the
    codec's, ``kv_cache`` the slow cache for ``max_tokens`` slots plus the fast cache (``num_codebooks`` slots).
    """

    slow_weights: int
    fast_weights: int
    codec_weights: int
    kv_cache: int
    dtype: torch.dtype
    quantization: str
    max_tokens: int
    batch_size: int

    @property
    def total(self) -> int:
        return self.slow_weights + self.fast_weights + self.codec_weights + self.kv_cache

    def as_dict(self) -> dict[str, int]:
        return {
            "slow_weights": self.slow_weights,
            "fast_weights": self.fast_weights,
            "codec_weights": self.codec_weights,
            "kv_cache": self.kv_cache,
            "total": self.total,
        }

    def to_table(self) -> str:
        """A plain-text table of the components in bytes and GiB, headed by the configuration."""
        rows = [
            ("slow AR weights", self.slow_weights),
            ("fast AR weights", self.fast_weights),
            ("codec weights", self.codec_weights),
            (f"KV cache ({self.max_tokens} tokens x {self.batch_size})", self.kv_cache),
            ("total", self.total),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [
            f"Fish S2 memory: compute dtype {_dtype_name(self.dtype)}, quantization {self.quantization}",
            f"{'component':<{width}}  {'bytes':>15}  {'GiB':>7}",
        ]
        lines += [f"{name:<{width}}  {value:>15,}  {value / 2**30:>7.2f}" for name, value in rows]
        return "\n".join(lines)


def estimate_memory(
    config_or_path: FishS2Config | str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | str = torch.bfloat16,
    quantization: str | QuantizationConfigMixin | None = None,
    max_tokens: int = 2048,
    batch_size: int = 1,
    codec: str = "full",
    codec_config: FishS2CodecConfig | dict | str | os.PathLike | None = None,
    codec_dtype: torch.dtype | str | None = None,
) -> MemoryEstimate:
    """Estimate the resident bytes of Fish S2 (weights, codec, KV caches) without loading any weights.

    Args:
        config_or_path: a :class:`FishS2Config`, a checkpoint directory or Hub id (its ``config.json``), or
            ``None`` for the released ``fishaudio/s2-pro`` (the package's config defaults).
        dtype: compute dtype of the model (``torch.bfloat16`` or ``"bf16"``/``"fp16"``/``"fp32"``); the dtype
            of every unquantized tensor and of the KV cache.
        quantization: ``None`` (the checkpoint's own quantization config, if it has one), ``"none"``, a scheme from
            :data:`~transformers_fish_s2.quantization.QUANTIZATION_SCHEMES` (``"bnb-8bit"``, ``"bnb-4bit"``,
            ``"quanto-int8"``, ``"quanto-int4"``: the package defaults), or a ``BitsAndBytesConfig`` /
            ``QuantoConfig`` as passed to ``from_pretrained`` (the default skip rule applies when it has none).
        max_tokens: slow KV-cache slots (prompt + generated frames; ``generate`` rounds this up to a multiple
            of 256).
        batch_size: rows decoded together (scales the KV caches only).
        codec: ``"full"`` (encoder + decoder, what the processor loads), ``"decoder"`` (decode only) or
            ``"none"`` (codec elsewhere, e.g. on the CPU).
        codec_config: the codec's config; by default read from ``codec_config.json``/``.yaml`` or
            ``codec/config.json`` in a local checkpoint directory, else the official one.
        codec_dtype: the codec's dtype (default: ``dtype``); the codec is never quantized.
    """
    config = _model_config(config_or_path)
    dtype = parse_dtype(dtype, "dtype")
    codec_dtype = dtype if codec_dtype is None else parse_dtype(codec_dtype, "codec_dtype")
    for name, value in (("max_tokens", max_tokens), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if codec not in CODEC_PARTS:
        raise ValueError(f"codec must be one of {', '.join(CODEC_PARTS)}, got {codec!r}")
    if quantization is None and getattr(config, "quantization_config", None) is not None:
        quantization = AutoQuantizationConfig.from_dict(config.quantization_config)  # a quantized checkpoint
    quant = quantization_config(quantization, compute_dtype=dtype)

    with torch.device("meta"):
        model = FishS2ForConditionalGeneration(config).to(dtype)
    linear_bytes = _quantized_linear_bytes(quant, dtype) if quant is not None else None
    skip = [] if quant is None else [*(skip_modules_of(quant) or ()), *(model._keep_in_fp32_modules or ())]
    parts, seen = {"text_model": 0, "audio_decoder": 0}, set()
    for module_name, module in model.named_modules():
        converted = (
            linear_bytes is not None
            and _is_converted(module, quant)
            and should_convert_module(module_name, skip)
        )
        for tensor_name, tensor in _own_tensors(module):
            if id(tensor) in seen:  # a tied weight counts once
                continue
            seen.add(id(tensor))
            size = (
                linear_bytes(tensor.shape)
                if converted and tensor_name == "weight"
                else tensor.numel() * dtype.itemsize
            )
            parts[module_name.split(".", 1)[0]] += size

    codec_bytes = 0
    if codec != "none":
        codec_cfg = _codec_config(config_or_path, codec_config, decoder_only=codec == "decoder")
        with torch.device("meta"):
            codec_model = FishS2CodecModel(codec_cfg)
        codec_bytes = sum(t.numel() for t in _unique_tensors(codec_model)) * codec_dtype.itemsize

    return MemoryEstimate(
        slow_weights=parts["text_model"],
        fast_weights=parts["audio_decoder"],
        codec_weights=codec_bytes,
        kv_cache=kv_cache_bytes(config, max_tokens, batch_size=batch_size, dtype=dtype),
        dtype=dtype,
        quantization=_describe(quant),
        max_tokens=max_tokens,
        batch_size=batch_size,
    )


def kv_cache_bytes(
    config: FishS2Config, max_tokens: int, *, batch_size: int = 1, dtype: torch.dtype = torch.bfloat16
) -> int:
    """Keys + values of the slow AR for ``max_tokens`` slots plus the fast AR's ``num_codebooks``-slot cache."""

    def cache(transformer_config, slots: int) -> int:
        per_slot = (
            transformer_config.n_layer * transformer_config.num_key_value_heads * transformer_config.head_dim
        )
        return 2 * batch_size * slots * per_slot * dtype.itemsize

    return cache(config.text_config, max_tokens) + cache(config.audio_decoder_config, config.num_codebooks)


def linear_weight_bytes(
    shape: Sequence[int],
    quantization: str | QuantizationConfigMixin | None = None,
    dtype: torch.dtype | str = torch.bfloat16,
) -> int:
    """Bytes of one linear layer's weight ``[out, in]`` once converted by ``quantization`` (a scheme name or
    config), quantization state included; ``None`` gives the plain ``dtype`` size."""
    dtype = parse_dtype(dtype, "dtype")
    quant = quantization_config(quantization, compute_dtype=dtype)
    if quant is None:
        return math.prod(shape) * dtype.itemsize
    return _quantized_linear_bytes(quant, dtype)(tuple(shape))


def measure_memory(model: nn.Module) -> dict[str, int]:
    """Bytes a loaded model holds, per top-level submodule (``{"text_model": ..., "audio_decoder": ...}`` for
    Fish S2): every parameter and buffer once, tensor subclasses (quanto) by their inner tensors, bitsandbytes
    parameters with their quantization state. Works on meta-device models too."""
    parts: dict[str, int] = {}
    for name, tensor in _unique_tensors(model, with_names=True):
        part = name.split(".", 1)[0]
        parts[part] = parts.get(part, 0) + _stored_bytes(tensor)
    return parts


def format_memory_table(estimates: Sequence[MemoryEstimate]) -> str:
    """A Markdown table (GiB) with one row per estimate, as in ``docs/quantization.md``."""
    header = "| compute dtype | quantization | context | slow AR | fast AR | codec | KV cache | total |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for e in estimates:
        gib = [f"{value / 2**30:.2f}" for value in e.as_dict().values()]
        lines.append(
            f"| {_dtype_name(e.dtype)} | {e.quantization} | {e.max_tokens} | "
            + " | ".join(gib[:-1])
            + f" | **{gib[-1]}** |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------


def _quantized_linear_bytes(quant: QuantizationConfigMixin, dtype: torch.dtype):
    """``weight shape → bytes`` of a converted linear layer's weight (with its quantization state)."""
    if isinstance(quant, BitsAndBytesConfig):
        if quant.load_in_8bit:
            return lambda shape: math.prod(shape) + 4 * shape[0]  # int8 weight + fp32 row scales (SCB)
        if quant.bnb_4bit_quant_storage not in (None, "uint8", torch.uint8):
            raise ValueError(
                f"memory estimate: bnb_4bit_quant_storage={quant.bnb_4bit_quant_storage!r} is not supported "
                "(only the default uint8)"
            )
        return lambda shape: _bnb_4bit_bytes(math.prod(shape), quant.bnb_4bit_use_double_quant)
    if isinstance(quant, QuantoConfig):
        if quant.weights not in _QUANTO_BITS:
            raise ValueError(f"memory estimate: unknown quanto weights {quant.weights!r}")
        bits = _QUANTO_BITS[quant.weights]
        return lambda shape: _quanto_bytes(shape, bits, dtype)
    raise ValueError(
        f"memory estimate: {type(quant).__name__} is not supported; use a BitsAndBytesConfig or a QuantoConfig"
    )


def _bnb_4bit_bytes(numel: int, double_quant: bool) -> int:
    blocks = math.ceil(numel / _BNB_4BIT_BLOCKSIZE)
    packed = math.ceil(numel / 2)
    if not double_quant:
        return packed + 4 * blocks + _BNB_4BIT_CODE_BYTES
    nested = 4 * math.ceil(blocks / _BNB_NESTED_BLOCKSIZE) + _BNB_NESTED_CODE_BYTES + 4  # + fp32 offset
    return packed + blocks + _BNB_4BIT_CODE_BYTES + nested


def _quanto_bytes(shape: torch.Size, bits: int, dtype: torch.dtype) -> int:
    out_features, in_features = shape[0], math.prod(shape[1:])
    if bits == 8:  # int8/float8 data + one scale per output row
        return out_features * in_features + out_features * dtype.itemsize + _QUANTO_SCALAR_BUFFERS_BYTES
    # int4/int2: groups of `group_size` along the input when it divides (optimum-quanto's QModuleMixin rule),
    # else one group per row; the data is packed 8/bits values per byte along the first dimension.
    group_size = _quanto_group_size(in_features)
    rows, cols = (out_features * in_features // group_size, group_size) if group_size else shape[:2]
    packed = math.ceil(rows / (8 // bits)) * cols
    scale_and_shift = 2 * rows * dtype.itemsize
    return packed + scale_and_shift + _QUANTO_SCALAR_BUFFERS_BYTES


def _quanto_group_size(in_features: int) -> int | None:
    group_size = 128
    if in_features <= group_size:
        return None
    while in_features % group_size and group_size > 32:
        group_size -= 32
    return group_size if in_features % group_size == 0 else None


def _is_converted(module: nn.Module, quant: QuantizationConfigMixin) -> bool:
    """The module test of each integration: bitsandbytes converts exact ``nn.Linear``, quanto subclasses too."""
    if isinstance(quant, BitsAndBytesConfig):
        return type(module) is nn.Linear
    return isinstance(module, nn.Linear)


def _own_tensors(module: nn.Module):
    yield from module.named_parameters(recurse=False)
    yield from module.named_buffers(recurse=False)


def _unique_tensors(model: nn.Module, with_names: bool = False):
    """Parameters then buffers, each object once (tied weights count once)."""
    seen = set()
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            yield (name, tensor) if with_names else tensor


def _stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes of a tensor's own data plus any quantization state it carries."""
    if hasattr(tensor, "__tensor_flatten__"):  # wrapper subclasses (quanto QTensor): sum the inner tensors
        inner_names, _ = tensor.__tensor_flatten__()
        return sum(_stored_bytes(getattr(tensor, name)) for name in inner_names)
    size = tensor.numel() * tensor.element_size()
    scb = getattr(tensor, "SCB", None)  # bitsandbytes Int8Params row scales (CB shares the weight's storage)
    if isinstance(scb, torch.Tensor):
        size += scb.numel() * scb.element_size()
    state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit
    while state is not None:  # absmax, code, offset; then the nested state of double quantization
        size += sum(v.numel() * v.element_size() for v in vars(state).values() if isinstance(v, torch.Tensor))
        state = state.state2 if getattr(state, "nested", False) else None
    return size


def _model_config(config_or_path: FishS2Config | str | os.PathLike | None) -> FishS2Config:
    if config_or_path is None:
        return FishS2Config()
    if isinstance(config_or_path, FishS2Config):
        return config_or_path
    if isinstance(config_or_path, (str, os.PathLike)):
        return FishS2Config.from_pretrained(config_or_path)
    raise TypeError(
        f"config_or_path must be a FishS2Config, a checkpoint path or Hub id, or None; got {type(config_or_path).__name__}"
    )


def _codec_config(config_or_path, codec_config, decoder_only: bool) -> FishS2CodecConfig:
    if (
        codec_config is None
        and isinstance(config_or_path, (str, os.PathLike))
        and Path(config_or_path).is_dir()
    ):
        directory = Path(config_or_path)
        for candidate in ("codec_config.json", "codec_config.yaml", "codec/config.json"):
            if (directory / candidate).is_file():
                codec_config = directory / candidate
                break
    if codec_config is None:
        return FishS2CodecConfig(decoder_only=decoder_only)
    if isinstance(codec_config, (str, os.PathLike)) and Path(codec_config).name == "config.json":
        codec_config = FishS2CodecConfig.from_json_file(codec_config)  # a codec saved with save_pretrained
    codec_config = copy.deepcopy(FishS2CodecConfig.from_any(codec_config))
    codec_config.decoder_only = decoder_only
    return codec_config


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(quant: QuantizationConfigMixin | None) -> str:
    if quant is None:
        return "none"
    if isinstance(quant, BitsAndBytesConfig):
        if quant.load_in_8bit:
            return "bnb-8bit"
        return f"bnb-4bit ({quant.bnb_4bit_quant_type}{', double quant' if quant.bnb_4bit_use_double_quant else ''})"
    if isinstance(quant, QuantoConfig):
        return f"quanto-{quant.weights}"
    return type(quant).__name__
