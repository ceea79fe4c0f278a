"""Fish Audio S2 Dual-AR model: a slow AR over text/semantic tokens and a fast AR over the codebooks of a frame.

The module tree mirrors the official checkpoint so its keys load without any mapping:

    text_model.model.{embeddings, layers.N.{attention.{wqkv, wo, q_norm, k_norm}, attention_norm,
                      feed_forward.{w1, w2, w3}, ffn_norm}, norm}      slow AR
    text_model.lm_head                                                 only when the head is untied
    audio_decoder.{codebook_embeddings, project_in, embeddings, layers.N..., norm, output}   fast AR

Numerics follow the reference (docs/reference-behaviour.md): interleaved RoPE with a bf16-rounded cos/sin
table computed from the positions in use (no 32k-position table), fp32 RMSNorm cast back before the weight, ``torch.nn.RMSNorm`` for
the per-head q/k norms (what the reference uses there), and semantic-position input embeddings
``(token + Σ codebook embeddings) / √(num_codebooks + 1)``. Attention goes through transformers' attention
interface (``sdpa`` by default, ``eager``) and keys/values through transformers ``Cache`` objects; masks are
built from cache slots and the attention mask, never as a ``max_seq_len²`` buffer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, StaticCache, StaticLayer
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, can_return_tuple

from ..checkpoint import (
    FishS2CheckpointError,
    check_finite,
    check_safetensors_files,
    local_checkpoint_dir,
    raise_on_mismatch,
    require_file,
)
from ..config_checks import MAX_MODEL_BYTES, check_model_bytes
from ..layers import (
    FishS2FeedForward,
    FishS2RMSNorm,
    apply_interleaved_rope,
    fish_rms_norm,
    rope_cos_sin,
    rope_inverse_frequencies,
    rotation_tables,
)
from ..validation import HUB_KWARGS, audio_codes_or_zeros, dtype_itemsize
from .configuration_fish_s2 import FishS2Config, FishS2FastTransformerConfig, FishS2TextConfig
from .cpu_layout import is_column_major, is_shared, lay_out_for_cpu_decoding, restore_row_major
from .generation_fish_s2 import FishS2GenerationMixin
from .quantization_defaults import with_default_skip_modules
from .sampling import semantic_token_mask

TransformerConfig = FishS2TextConfig | FishS2FastTransformerConfig


@dataclass
class FishS2Output(ModelOutput):
    """Output of :meth:`FishS2ForConditionalGeneration.forward`.

    Args:
        loss: slow-AR token cross-entropy + fast-AR codebook cross-entropy (only with ``labels``).
        logits: slow-AR logits ``[B, T', vocab]`` (``T'`` set by ``logits_to_keep``).
        last_hidden_state: final-normed slow-AR hidden state ``[B, T', dim]``, sliced like ``logits``; this is
            what the fast AR is fed.
        cache: the slow AR's cache, when caching (also readable as ``past_key_values``; transformers 5.24
            renamed the output field to ``cache``).
        fast_logits: teacher-forced fast-AR logits ``[n_frames, num_codebooks, codebook_size]`` for the labelled
            semantic frames (only with ``labels``).
        slow_loss, fast_loss: the two terms of ``loss`` (only with ``labels``), for logging them apart.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    fast_logits: torch.FloatTensor | None = None
    slow_loss: torch.FloatTensor | None = None
    fast_loss: torch.FloatTensor | None = None

    @property
    def past_key_values(self) -> Cache | None:
        return self.cache


_INVERSE_FREQUENCIES: dict[tuple[int, float, torch.device], torch.Tensor] = {}


def _inverse_frequencies(head_dim: int, base: float, device: torch.device) -> torch.Tensor:
    """:func:`rope_inverse_frequencies`, made once per shape and device when eager (64 fp32 values that no
    ``model.to`` can touch: they are not a buffer)."""
    if torch.compiler.is_compiling():
        return rope_inverse_frequencies(head_dim, base, device=device)
    key = (head_dim, base, device)
    if key not in _INVERSE_FREQUENCIES:
        _INVERSE_FREQUENCIES[key] = rope_inverse_frequencies(head_dim, base, device=device)
    return _INVERSE_FREQUENCIES[key]


def rotary_cos_sin(
    config: TransformerConfig, position_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference-rounded RoPE rotation tables ``[B, T, 1, head_dim]`` (:func:`rotation_tables`, broadcast over
    heads) for ``position_ids [B, T]``.

    The inverse frequencies (64 values) are not kept in a buffer, so a ``model.to(torch.bfloat16)`` can never
    round them.
    """
    inv_freq = _inverse_frequencies(config.head_dim, config.rope_base, position_ids.device)
    cos, sin = rotation_tables(*rope_cos_sin(position_ids, inv_freq))
    return cos.unsqueeze(-2), sin.unsqueeze(-2)


def seek_static_cache(cache: Cache, slot: torch.Tensor | int) -> None:
    """Make the next update of every static layer of ``cache`` write at ``slot`` (and mask from there).

    transformers' ``StaticLayer`` appends at its ``cumulative_length``; setting it in place (a 0-d tensor with a
    static address) keeps the step graph-capturable. Dynamic layers always append and are left alone.
    """
    for layer in cache.layers:
        if isinstance(layer, StaticLayer):
            if isinstance(slot, torch.Tensor):
                layer.cumulative_length.copy_(slot.reshape(()))
            else:
                layer.cumulative_length.fill_(slot)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention with grouped-query heads (KV head ``g`` serves query heads ``g·r … g·r+r-1``)."""
    key = key.repeat_interleave(module.num_key_value_groups, dim=1)
    value = value.repeat_interleave(module.num_key_value_groups, dim=1)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class FishS2Attention(nn.Module):
    """Grouped-query attention with a fused ``wqkv`` projection, optional per-head q/k RMSNorm and interleaved RoPE."""

    def __init__(self, config: TransformerConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.n_head
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = config.n_head // config.num_key_value_heads
        self.scaling = config.head_dim**-0.5
        self.is_causal = True
        self.head_splits = (config.n_head, config.num_key_value_heads, config.num_key_value_heads)
        self.wqkv = nn.Linear(
            config.dim, sum(self.head_splits) * config.head_dim, bias=config.attention_qkv_bias
        )
        self.wo = nn.Linear(config.n_head * config.head_dim, config.dim, bias=config.attention_o_bias)
        # The reference uses torch's own RMSNorm here (not the fp32-then-cast one): keep its exact numerics.
        self.q_norm = nn.RMSNorm(config.head_dim, eps=config.norm_eps) if config.attention_qk_norm else None
        self.k_norm = nn.RMSNorm(config.head_dim, eps=config.norm_eps) if config.attention_qk_norm else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        heads = self.wqkv(hidden_states).view(batch, length, -1, self.head_dim)  # [B, T, H + 2·KV heads, D]
        cos, sin = position_embeddings
        if self.q_norm is None:  # queries and keys rotated in one call
            query_key = apply_interleaved_rope(heads[:, :, : -self.num_key_value_heads], cos, sin)
            query, key = query_key.split((self.num_heads, self.num_key_value_heads), dim=2)
        else:
            query, key, _ = heads.split(self.head_splits, dim=2)
            query = apply_interleaved_rope(self.q_norm(query), cos, sin)
            key = apply_interleaved_rope(self.k_norm(key), cos, sin)
        value = heads[:, :, -self.num_key_value_heads :]
        query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)

        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.wo(output.reshape(batch, length, -1)), weights


class FishS2DecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: ``h = x + attn(norm(x))``; ``out = h + ffn(norm(h))``."""

    def __init__(self, config: TransformerConfig, layer_idx: int):
        super().__init__()
        self.attention = FishS2Attention(config, layer_idx)
        self.feed_forward = FishS2FeedForward(config.dim, config.intermediate_size)
        self.attention_norm = FishS2RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn_norm = FishS2RMSNorm(config.dim, eps=config.norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        attended, _ = self.attention(
            self.attention_norm(hidden_states), position_embeddings, attention_mask, cache, **kwargs
        )
        hidden_states = hidden_states + attended
        return hidden_states + self.feed_forward(self.ffn_norm(hidden_states))

    def step(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: Cache,
        slot: int | None,
        attention: Callable,
    ) -> torch.Tensor:
        """:meth:`forward` in inference without calling the submodules: the same ATen ops in the same order (so
        the same bits), minus the ``nn.Module`` call machinery and the cache bookkeeping, which cost an eager
        decode step about as much as its small ops. Only for layers that :func:`plain_decoder_layers` accepts.

        ``slot``: an int writes this step's keys/values at slots ``slot …`` of the layer's static cache directly
        (the fast transformer's cache); None goes through ``cache.update`` (where the cache says; no cache: none).
        """
        # Submodules and parameters are read from their dicts: nn.Module.__getattr__ would cost ~20 Python calls a
        # layer (the parts were checked by plain_decoder_layers).
        parts = self._modules
        attention_module, feed_forward = parts["attention"], parts["feed_forward"]
        attention_parts, feed_forward_parts = attention_module._modules, feed_forward._modules
        batch, length, _ = hidden_states.shape
        kv_heads = attention_module.num_key_value_heads
        heads = _linear(_rms_norm(parts["attention_norm"], hidden_states), attention_parts["wqkv"])
        heads = heads.view(batch, length, -1, attention_module.head_dim)
        q_norm, k_norm = attention_parts.get("q_norm"), attention_parts.get("k_norm")
        if q_norm is None:
            query_key = apply_interleaved_rope(heads[:, :, :-kv_heads], cos, sin)
            query, key = query_key.split((attention_module.num_heads, kv_heads), dim=2)
        else:
            query, key, _ = heads.split(attention_module.head_splits, dim=2)
            query = F.rms_norm(query, q_norm.normalized_shape, q_norm._parameters["weight"], q_norm.eps)
            key = F.rms_norm(key, k_norm.normalized_shape, k_norm._parameters["weight"], k_norm.eps)
            query, key = apply_interleaved_rope(query, cos, sin), apply_interleaved_rope(key, cos, sin)
        value = heads[:, :, -kv_heads:]
        query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        layer_idx = attention_module.layer_idx
        if cache is None:
            pass
        elif slot is None:
            key, value = cache.update(key, value, layer_idx)
        else:
            layer = cache.layers[layer_idx]
            layer.keys[:, :, slot : slot + length] = key
            layer.values[:, :, slot : slot + length] = value
            key, value = layer.keys, layer.values
        output, _ = attention(
            attention_module, query, key, value, attention_mask, dropout=0.0, scaling=attention_module.scaling
        )
        hidden_states = hidden_states + _linear(output.reshape(batch, length, -1), attention_parts["wo"])
        normed = _rms_norm(parts["ffn_norm"], hidden_states)
        gated = F.silu(_linear(normed, feed_forward_parts["w1"])) * _linear(normed, feed_forward_parts["w3"])
        return hidden_states + _linear(gated, feed_forward_parts["w2"])


def _linear(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    parameters = linear._parameters
    return F.linear(x, parameters["weight"], parameters["bias"])


def _rms_norm(norm: FishS2RMSNorm, x: torch.Tensor) -> torch.Tensor:
    return fish_rms_norm(x, norm._parameters["weight"], norm.eps)


_STEP_PARTS = {
    "attention": (
        FishS2Attention,
        {"wqkv": nn.Linear, "wo": nn.Linear, "q_norm": nn.RMSNorm, "k_norm": nn.RMSNorm},
    ),
    "feed_forward": (FishS2FeedForward, {"w1": nn.Linear, "w2": nn.Linear, "w3": nn.Linear}),
    "attention_norm": (FishS2RMSNorm, {}),
    "ffn_norm": (FishS2RMSNorm, {}),
}


def _hookless(module: nn.Module) -> bool:
    return not (
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def plain_decoder_layers(layers: nn.ModuleList) -> bool:
    """Whether :meth:`FishS2DecoderLayer.step` may stand in for these layers' module calls: every part is
    exactly the package's own module (no quantized or LoRA linear, no subclass) with no forward or backward
    hook, and no global module hook is set. Anything else runs the ordinary module calls. (Reads ``_modules``
    directly: this runs once per decode step and ``nn.Module.__getattr__`` would make it cost as much as a small
    op per part.)"""
    if (
        nn.modules.module._global_forward_hooks
        or nn.modules.module._global_forward_pre_hooks
        or nn.modules.module._global_backward_hooks
        or nn.modules.module._global_backward_pre_hooks
    ):
        return False
    for layer in layers._modules.values():
        if type(layer) is not FishS2DecoderLayer or not _hookless(layer):
            return False
        for name, (kind, children) in _STEP_PARTS.items():
            part = layer._modules[name]
            if type(part) is not kind or not _hookless(part):
                return False
            for child_name, child_kind in children.items():
                child = part._modules.get(child_name)  # q_norm/k_norm may be None (plain attributes then)
                if child is None and child_name in ("q_norm", "k_norm"):
                    continue
                if type(child) is not child_kind or not _hookless(child):
                    return False
    return True


class FishS2TextTransformer(nn.Module):
    """The slow AR body (checkpoint prefix ``text_model.model``): embeddings, blocks, final norm."""

    def __init__(self, config: FishS2TextConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(FishS2DecoderLayer(config, i) for i in range(config.n_layer))
        self.norm = FishS2RMSNorm(config.dim, eps=config.norm_eps)
        self._rotation_table: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _rotation(self, position_ids: torch.Tensor, cache: Cache | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`rotary_cos_sin` of ``position_ids``. Eager over a static cache the positions stay below its length,
        so the rows come from a table of that many positions, made once per cache length and device (the same
        values: each row is computed alone); otherwise they are computed from the positions."""
        layers = cache.layers if cache is not None else ()
        if (
            not layers
            or torch.compiler.is_compiling()
            or any(type(layer) is not StaticLayer for layer in layers)
        ):
            return rotary_cos_sin(self.config, position_ids)
        key = (layers[0].max_cache_len, position_ids.device, self.config.head_dim, self.config.rope_base)
        if self._rotation_table is None or self._rotation_table[0] != key:
            positions = torch.arange(key[0], device=position_ids.device)[None]
            self._rotation_table = key, tuple(table[0] for table in rotary_cos_sin(self.config, positions))
        cos, sin = self._rotation_table[1]
        return cos[position_ids], sin[position_ids]

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        cache_position: torch.LongTensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Run the blocks over ``inputs_embeds [B, T, D]`` and return the final-normed hidden state."""
        length = inputs_embeds.shape[1]
        if cache_position is not None:
            first_slot = cache_position[0]
            if cache is not None:
                seek_static_cache(cache, first_slot)
        else:
            first_slot = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = _position_ids(attention_mask, first_slot, length, inputs_embeds.device)

        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        position_embeddings = self._rotation(position_ids, cache)
        hidden_states = inputs_embeds
        if not (kwargs or self.training or torch.compiler.is_compiling()) and plain_decoder_layers(
            self.layers
        ):
            attention = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
            for layer in self.layers:  # the same ops without the module calls (FishS2DecoderLayer.step)
                hidden_states = layer.step(hidden_states, *position_embeddings, mask, cache, None, attention)
            return self.norm(hidden_states)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                position_embeddings=position_embeddings,
                attention_mask=mask,
                cache=cache,
                **kwargs,
            )
        return self.norm(hidden_states)


def _position_ids(
    attention_mask: torch.Tensor | None, first_slot: torch.Tensor | int, length: int, device: torch.device
) -> torch.LongTensor:
    """RoPE positions of the cache slots ``first_slot … first_slot+length-1``.

    With a 2-D attention mask over the cache slots (left padding), a token's position is the number of real
    tokens before it, so every row starts at position 0 whatever its padding.
    """
    slots = torch.arange(length, device=device) + first_slot
    if attention_mask is None:
        return slots[None]
    positions = attention_mask.long().cumsum(-1) - 1
    return positions[:, slots].clamp(min=0)


class FishS2PreTrainedModel(PreTrainedModel):
    """Shared base of the whole model and of its two parts (each part is a sub-model with its own sub-config, so
    transformers sets and checks their attention implementation like any composite model's)."""

    config_class = FishS2Config  # explicit: the `config:` annotation is a string under postponed evaluation
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("text", "audio")
    supports_gradient_checkpointing = True
    _no_split_modules = ["FishS2DecoderLayer"]
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _supports_sdpa = True
    _can_compile_fullgraph = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Stock ``from_pretrained`` (``dtype=``, ``device_map=``, quantization, sharded or single-file
        safetensors), but strict: a checkpoint with missing, unexpected or wrongly shaped tensors raises
        :class:`FishS2CheckpointError` naming the keys and files instead of leaving random weights behind
        (the reference loader hides them). ``ignore_mismatched_sizes=True`` keeps transformers'
        behaviour for shapes (re-initialise and warn); missing/unexpected keys are always an error.
        A ``quantization_config`` without its own skip list gets the package's rule (fast AR and output head stay
        unquantized; :mod:`transformers_fish_s2.quantization`).

        Before anything is built, ``config.json`` must be a regular file (a missing one would make transformers
        build the default s2-pro) and the weights the config describes must fit ``max_model_bytes`` (default
        :data:`~transformers_fish_s2.config_checks.MAX_MODEL_BYTES`, counted in the dtype being loaded). Weights
        with NaN/inf values or non-floating dtypes are refused.
        """
        ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
        output_loading_info = kwargs.pop("output_loading_info", False)
        max_model_bytes = kwargs.pop("max_model_bytes", MAX_MODEL_BYTES)
        if kwargs.get("quantization_config") is not None:
            kwargs["quantization_config"] = with_default_skip_modules(kwargs["quantization_config"])
        local_dir = local_checkpoint_dir(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        config = kwargs.get("config")
        if not isinstance(config, PretrainedConfig):
            if local_dir is not None and config is None:
                require_file(local_dir / "config.json")
            location = {key: kwargs[key] for key in (*HUB_KWARGS, "subfolder") if key in kwargs}
            config = cls.config_class.from_pretrained(config or pretrained_model_name_or_path, **location)
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        check_model_bytes(
            cls.__name__, config.num_parameters, dtype_itemsize(dtype, config.dtype), max_model_bytes
        )
        quantized = getattr(config, "quantization_config", None) is not None  # a saved quantized checkpoint
        key_to_file = check_safetensors_files(local_dir, quantized=quantized) if local_dir is not None else {}
        try:
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path,
                *model_args,
                ignore_mismatched_sizes=True,  # report shapes ourselves, naming the file
                output_loading_info=True,
                **kwargs,
            )
        except SafetensorError as err:
            raise FishS2CheckpointError(
                f"Could not read the safetensors weights of {pretrained_model_name_or_path}: {err}. The download may "
                "be incomplete; delete the cached files and download them again."
            ) from err
        raise_on_mismatch(
            cls.__name__,
            pretrained_model_name_or_path,
            missing=loading_info["missing_keys"],
            unexpected=loading_info["unexpected_keys"],
            mismatched=() if ignore_mismatched_sizes else loading_info["mismatched_keys"],
            key_to_file=key_to_file,
            hint="is config.json from the same checkpoint?",
        )
        check_finite(model.named_parameters(), pretrained_model_name_or_path)
        return (model, loading_info) if output_loading_info else model


class FishS2TextModel(FishS2PreTrainedModel):
    """The slow AR (checkpoint prefix ``text_model``): the transformer plus its output head.

    The released model ties the head to the input embeddings, so ``lm_head`` only exists when
    ``tie_word_embeddings`` is false (the reference silently ignores an untied head; we load it).
    """

    config_class = FishS2TextConfig

    def __init__(self, config: FishS2TextConfig):
        super().__init__(config)
        self.model = FishS2TextTransformer(config)
        self.lm_head = (
            None if config.tie_word_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False)
        )
        self.post_init()

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Project final-normed hidden states to the token vocabulary."""
        if self.lm_head is None:
            return F.linear(hidden_states, self.model.embeddings.weight)
        return self.lm_head(hidden_states)


class FishS2FastTransformer(FishS2PreTrainedModel):
    """The fast transformer over codebooks (the "fast AR"): predicts codebooks 0…n-1 of one frame.

    Its weights sit under the official checkpoint prefix ``audio_decoder`` (hence ``model.audio_decoder``);
    it decodes nothing to audio, that is the codec's decoder (:mod:`transformers_fish_s2.codec`).

    Its sequence for a frame is ``[project_in(h), emb(c_0), …, emb(c_{n-2})]`` where ``h`` is the slow AR's
    final-normed hidden state at the position that predicts the frame; output ``k`` predicts codebook ``k``
    (output 0 duplicates the slow AR's semantic prediction and is only used in training).
    ``codebook_embeddings`` lives here in the checkpoint but feeds the *slow* AR's input (see
    :meth:`FishS2ForConditionalGeneration.embed_inputs`).
    """

    config_class = FishS2FastTransformerConfig

    def __init__(self, config: FishS2FastTransformerConfig):
        super().__init__(config)
        self.codebook_embeddings = nn.Embedding(config.vocab_size * config.num_codebooks, config.text_dim)
        self.project_in = (
            nn.Linear(config.text_dim, config.dim) if config.text_dim != config.dim else nn.Identity()
        )
        self.embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(FishS2DecoderLayer(config, i) for i in range(config.n_layer))
        self.norm = FishS2RMSNorm(config.dim, eps=config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self._step_constants: dict[tuple, tuple] = {}  # see _positions
        self.post_init()

    def embed_codes(self, codes: torch.LongTensor) -> torch.Tensor:
        """Fast-AR input embedding of codes (one table shared by all codebooks): ``[...] → [..., dim]``."""
        return self.embeddings(codes)

    def forward(self, hidden_states: torch.Tensor, codes: torch.LongTensor) -> torch.Tensor:
        """Teacher-forced pass: ``hidden_states [N, text_dim]``, ``codes [N, num_codebooks]`` →
        logits ``[N, num_codebooks, codebook_size]`` (entry ``k`` predicts ``codes[:, k]``)."""
        num_codebooks = self.config.num_codebooks
        if hidden_states.dim() != 2 or hidden_states.shape[-1] != self.config.text_dim:
            raise ValueError(
                f"hidden_states must be [N, {self.config.text_dim}] (one slow-AR hidden state per frame), got "
                f"{tuple(hidden_states.shape)}"
            )
        if codes.shape != (hidden_states.shape[0], num_codebooks):
            raise ValueError(
                f"codes must be [N, num_codebooks] = [{hidden_states.shape[0]}, {num_codebooks}], got {tuple(codes.shape)}"
            )
        inputs_embeds = torch.cat(
            [self.project_in(hidden_states)[:, None], self.embed_codes(codes[:, :-1])], dim=1
        )
        position_ids = torch.arange(num_codebooks, device=inputs_embeds.device)[None]
        mask = create_causal_mask(
            config=self.config, inputs_embeds=inputs_embeds, attention_mask=None, cache=None
        )
        return self.output(
            self._run(inputs_embeds, rotary_cos_sin(self.config, position_ids), mask, cache=None)
        )

    def decode_step(
        self,
        inputs_embeds: torch.Tensor,
        position: torch.LongTensor | int,
        past_key_values: Cache,
        *,
        shortcut: bool | None = None,
    ) -> torch.Tensor:
        """Fast-AR positions ``position … position+L-1`` for ``N`` frames at once: ``inputs_embeds [N, L, dim]`` →
        logits ``[N, codebook_size]`` of the last of them (the head runs only there).

        Writes keys/values at those slots of ``past_key_values`` (a cache from :meth:`make_fast_cache`) and attends
        causally to slots ``0…``, so a cache is reused across frames without clearing: a frame restarts at
        position 0 with ``project_in(hidden)`` and continues at position ``k`` with ``embed_codes(c_{k-1})``.
        Generation feeds positions 0 and 1 in one call (both inputs are known once the semantic token is drawn),
        so the layers' weights are read 9 times per frame instead of 10. ``position`` may be an int or a
        0-d/1-element tensor (a tensor avoids recompiling per position).

        With an int ``position``, eager, in inference, the layers run through :meth:`FishS2DecoderLayer.step`
        (same bits, no module calls) when :meth:`can_step` allows; ``shortcut`` passes its answer for this cache
        (the decode session asks once per frame), None asks here.
        """
        if inputs_embeds.dim() != 3 or not 1 <= inputs_embeds.shape[1] <= self.config.num_codebooks:
            raise ValueError(
                f"inputs_embeds must be [N, 1, {self.config.dim}] (or [N, L, {self.config.dim}] for L consecutive "
                f"positions), got {tuple(inputs_embeds.shape)}"
            )
        if shortcut is None:
            shortcut = self.can_step(past_key_values)
        if shortcut and isinstance(position, int):
            (cos, sin), mask = self._positions(inputs_embeds, position, past_key_values)
            attention = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
            hidden_states = inputs_embeds
            for layer in self.layers:
                hidden_states = layer.step(
                    hidden_states, cos, sin, mask, past_key_values, position, attention
                )
            return self.output(self.norm(hidden_states)[:, -1])
        seek_static_cache(past_key_values, position)
        rotation, mask = self._positions(inputs_embeds, position, past_key_values)
        hidden_states = self._run(inputs_embeds, rotation, mask, cache=past_key_values)
        return self.output(hidden_states[:, -1])

    def can_step(self, cache: Cache) -> bool:
        """Whether :meth:`decode_step` over ``cache`` may run its layers through :meth:`FishS2DecoderLayer.step`:
        eager inference over a static cache with plain layers (:func:`plain_decoder_layers`)."""
        return (
            not self.training
            and not torch.compiler.is_compiling()
            and not getattr(cache, "offloading", False)
            and all(type(layer) is StaticLayer for layer in cache.layers)
            and plain_decoder_layers(self.layers)
        )

    def make_fast_cache(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> StaticCache:
        """A ``StaticCache`` with ``num_codebooks`` slots for :meth:`decode_step`, allocated up front.

        ``device``/``dtype`` default to the fast AR's norm weight (never quantized, so it is the compute dtype).
        """
        device = self.norm.weight.device if device is None else device
        dtype = self.norm.weight.dtype if dtype is None else dtype
        cache = StaticCache(config=self.config, max_cache_len=self.config.num_codebooks)
        cache.early_initialization(
            batch_size, self.config.num_key_value_heads, self.config.head_dim, dtype, torch.device(device)
        )
        return cache

    def _positions(
        self, inputs_embeds: torch.Tensor, position: torch.LongTensor | int, cache: Cache
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """RoPE tables and causal mask of positions ``position …`` for :meth:`decode_step`.

        Every row attends causally over the same slots, so both are made for one row (they broadcast over the
        batch) and depend only on the position, the length, the dtype, the device and the attention
        implementation: for an int position they are made once and reused every frame (a compiled step folds
        them instead).
        """
        device, length = inputs_embeds.device, inputs_embeds.shape[1]
        key = (position, length, inputs_embeds.dtype, device, self.config._attn_implementation)
        reuse = isinstance(position, int) and not torch.compiler.is_compiling()
        if reuse and key in self._step_constants:
            return self._step_constants[key]
        position_ids = torch.as_tensor(position, device=device).reshape(1, 1) + torch.arange(
            length, device=device
        )
        seek_static_cache(cache, position)  # the mask starts at the cache's write position
        mask = create_causal_mask(
            config=self.config, inputs_embeds=inputs_embeds[:1], attention_mask=None, cache=cache
        )
        constants = rotary_cos_sin(self.config, position_ids), mask
        if reuse:
            self._step_constants[key] = constants
        return constants

    def _run(
        self,
        inputs_embeds: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        """The blocks and the final norm (the output head is left to the caller)."""
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(
                hidden_states, position_embeddings=position_embeddings, attention_mask=mask, cache=cache
            )
        return self.norm(hidden_states)


def _row_major_state_dict(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """State-dict hook: a weight laid out for CPU decoding (column-major, in a shared buffer) is returned as an
    ordinary row-major tensor of its own (``keep_vars=True`` still returns the parameters themselves)."""
    for key, value in state_dict.items():
        if type(value) is torch.Tensor and (is_column_major(value) or is_shared(value)):
            state_dict[key] = value.clone(memory_format=torch.contiguous_format)


class FishS2ForConditionalGeneration(FishS2PreTrainedModel, FishS2GenerationMixin):
    """Fish Audio S2 Dual-AR text-to-speech model (slow AR over tokens + fast AR over codebooks).

    Inputs are token ids ``[B, T]`` plus the codes of the audio frames they carry ``[B, num_codebooks, T]``
    (zeros at text positions), as built by ``FishS2Processor``.
    """

    accepts_loss_kwargs = False
    """The loss is a mean per batch (``num_items_in_batch`` is not taken): tells the ``Trainer`` to divide it by the
    gradient-accumulation steps itself and not to pass loss keywords into ``forward``."""

    cpu_weight_layout: bool = True
    """Let a decode session on the CPU lay fp32 linear weights out column-major (:meth:`optimize_for_cpu_decoding`);
    set to False on a model to keep them row-major."""

    def __init__(self, config: FishS2Config):
        super().__init__(config)
        self.text_model = FishS2TextModel(config.text_config)
        self.audio_decoder = FishS2FastTransformer(config.audio_decoder_config)
        self.post_init()
        self.register_state_dict_post_hook(_row_major_state_dict)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        processor=None,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        max_shard_size: str | int = "5GB",
        create_pr: bool = False,
        revision: str | None = None,
    ):
        """Upload the model (and ``processor``, if given) with this package's model card in one commit;
        transformers' mixin would write its generic card. Hub failures say that the upload failed and why."""
        from ..hub import push_to_hub

        return push_to_hub(
            self,
            processor,
            repo_id,
            commit_message=commit_message or "Upload Fish S2 model and model card",
            private=private,
            token=token,
            max_shard_size=max_shard_size,
            create_pr=create_pr,
            revision=revision,
        )

    def optimize_for_cpu_decoding(self, enable: bool = True) -> FishS2ForConditionalGeneration:
        """Give the fp32 CPU weights the layout a CPU decodes fastest from (``enable=False``: every weight in its
        own row-major tensor again); returns ``self``.

        Decoding multiplies one row per layer by each weight, which is bound by how fast the weights are read:
        the plain ``nn.Linear`` weights at least as wide as they are deep are stored column-major (MKL's one-row
        fp32 product reads them faster so; one thread, cold caches: ``[1536, 512]`` 185 µs column-major against
        286 µs row-major, ``[512, 1536]`` 198 µs row-major against 266 µs column-major), and all linear and
        embedding weights are moved into a few 2 MiB-aligned buffers advised as transparent huge pages (fewer
        TLB misses; :mod:`~transformers_fish_s2.modeling.cpu_layout`, docs/speed.md). The decode session calls
        this when it is prepared on the CPU in fp32 (off switch: ``model.cpu_weight_layout = False``), and
        ``train()`` restores row-major. Shapes, values, parameter objects and state-dict keys stay the same, at
        most 64 MiB is added while weights move, and ``state_dict``/``save_pretrained`` give ordinary row-major
        tensors. bf16 weights, quantized and LoRA linears are left as they are (bf16 products are not faster in
        this layout; ``enable=False`` restores any dtype, e.g. a model cast to bf16 after its fp32 layout was
        made). Numerically the product may round differently in the last bit; a GPU gains nothing from it.
        """
        if enable:
            lay_out_for_cpu_decoding(self)
        else:
            restore_row_major(self)
        return self

    def train(self, mode: bool = True) -> FishS2ForConditionalGeneration:
        """``nn.Module.train``; training mode also puts the weights back in their ordinary row-major layout."""
        if mode:
            self.optimize_for_cpu_decoding(enable=False)
        return super().train(mode)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.model.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_model.model.embeddings = value

    def get_output_embeddings(self) -> nn.Linear | None:
        return self.text_model.lm_head

    def embed_inputs(
        self, input_ids: torch.LongTensor, audio_codes: torch.LongTensor | None = None
    ) -> torch.Tensor:
        """Slow-AR input embeddings ``[B, T, D]``.

        Text positions: the token embedding. Semantic positions (``<|semantic:k|>`` ids): token embedding plus
        the sum of the ``num_codebooks`` codebook embeddings of that frame, all divided by
        ``√(num_codebooks + 1)``. ``audio_codes=None`` means all-zero codes (the reference's layout for text).
        """
        config = self.config
        num_codebooks = config.num_codebooks
        audio_codes = audio_codes_or_zeros(audio_codes, input_ids, num_codebooks)
        embeds = self.text_model.model.embeddings(input_ids)
        offsets = torch.arange(num_codebooks, device=input_ids.device) * config.codebook_size
        codebook_sum = self.audio_decoder.codebook_embeddings(audio_codes + offsets[:, None]).sum(dim=1)
        is_semantic = semantic_token_mask(
            input_ids, config.semantic_start_token_id, config.semantic_end_token_id
        )
        is_semantic = is_semantic[..., None]
        embeds = embeds + torch.where(is_semantic, codebook_sum, 0)
        return torch.where(is_semantic, embeds / math.sqrt(num_codebooks + 1), embeds)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        audio_codes: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache_position: torch.LongTensor | None = None,
        **kwargs,
    ) -> FishS2Output:
        """Slow-AR forward pass.

        Args:
            input_ids: token ids ``[B, T]`` (or pass ``inputs_embeds [B, T, D]`` from :meth:`embed_inputs`).
            audio_codes: codes ``[B, num_codebooks, T]`` of the frames at semantic positions.
            attention_mask: ``[B, past + T]`` over cache slots, 0 for (left) padding. Without ``position_ids``,
                positions are derived from it so every row starts at 0.
            position_ids: RoPE positions ``[B, T]``.
            past_key_values: a transformers ``Cache``; a ``DynamicCache`` is created when ``use_cache``.
            use_cache: defaults to ``config.use_cache`` in eval mode and ``False`` in training mode.
            labels: ``[B, T]`` token ids, ``-100`` to ignore; shifted inside like any causal LM. Adds the slow
                cross-entropy and, for every labelled next token that is semantic, the fast AR's teacher-forced
                cross-entropy over all codebooks of that frame (targets from ``audio_codes``). Inputs use the
                inference embedding rule (÷√11 at semantic positions); the reference's own fine-tuning path
                skips that scale, so its fine-tunes see inputs that inference never produces.
            logits_to_keep: keep only the last ``n`` positions (int) or these indices (tensor) of
                ``logits``/``last_hidden_state``; ``0`` keeps all.
            cache_position: cache slots ``[T]`` written by this call (used with a ``StaticCache``, e.g. to restart
                a static decode); by default tokens are appended after the cached ones.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            self._check_token_ranges(input_ids, audio_codes)
            inputs_embeds = self.embed_inputs(input_ids, audio_codes)
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)

        hidden_states = self.text_model.model(
            inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=past_key_values,
            cache_position=cache_position,
            **kwargs,
        )
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        kept_hidden = hidden_states[:, keep]
        logits = self.text_model.compute_logits(kept_hidden)

        loss = fast_logits = slow_loss = fast_loss = None
        if labels is not None:
            if kept_hidden.shape[1] != hidden_states.shape[1]:
                raise ValueError("`labels` needs logits for every position: leave `logits_to_keep` at 0.")
            slow_loss, fast_loss, fast_logits = self._training_loss(
                hidden_states, logits, labels, audio_codes
            )
            loss = slow_loss + fast_loss

        return FishS2Output(
            loss=loss,
            logits=logits,
            last_hidden_state=kept_hidden,
            cache=past_key_values if use_cache else None,
            fast_logits=fast_logits,
            slow_loss=slow_loss,
            fast_loss=fast_loss,
        )

    def _check_token_ranges(self, input_ids: torch.LongTensor, audio_codes: torch.LongTensor | None) -> None:
        """Out-of-range ids would index another codebook's rows silently (or fail deep in torch): reject them.

        Skipped while compiling (it reads tensor values).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq_len], got shape {tuple(input_ids.shape)}")
        if torch.compiler.is_compiling():
            return
        vocab_size = self.config.text_config.vocab_size
        if ((input_ids < 0) | (input_ids >= vocab_size)).any():
            raise ValueError(f"input_ids holds ids outside the vocabulary [0, {vocab_size})")
        codebook_size = self.config.codebook_size
        if audio_codes is not None and ((audio_codes < 0) | (audio_codes >= codebook_size)).any():
            raise ValueError(f"audio_codes holds codes outside [0, {codebook_size}) (the codebook size)")

    def _training_loss(
        self,
        hidden_states: torch.Tensor,
        logits: torch.Tensor,
        labels: torch.LongTensor,
        audio_codes: torch.LongTensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Slow cross-entropy, fast cross-entropy (0 without labelled frames) and the fast logits."""
        if labels.shape != hidden_states.shape[:2]:
            raise ValueError(
                f"labels must be [batch, seq_len] = {tuple(hidden_states.shape[:2])}, got {tuple(labels.shape)}"
            )
        targets = labels[:, 1:]
        slow_loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100
        )

        # Positions whose next token is a labelled semantic token predict that frame's codebooks.
        is_frame = semantic_token_mask(
            targets, self.config.semantic_start_token_id, self.config.semantic_end_token_id
        )
        num_codebooks, codebook_size = self.config.num_codebooks, self.config.codebook_size
        if not is_frame.any():
            empty = logits.new_zeros(0, num_codebooks, codebook_size)
            return slow_loss, slow_loss.new_zeros(()), empty
        if audio_codes is None:
            raise ValueError(
                "labels contain semantic tokens: pass the frames' `audio_codes` for the fast-AR loss."
            )
        frame_hidden = hidden_states[:, :-1][is_frame]
        frame_codes = audio_codes[:, :, 1:].transpose(1, 2)[is_frame]
        fast_logits = self.audio_decoder(frame_hidden, frame_codes)
        fast_loss = F.cross_entropy(fast_logits.flatten(0, 1).float(), frame_codes.flatten())
        return slow_loss, fast_loss, fast_logits
