"""Configuration of Fish Audio S2 (``fishaudio/s2-pro``) in its official ``config.json`` schema.

The Hub checkpoint ships ``model_type: fish_qwen3_omni`` with a nested ``text_config`` (the slow AR, a
Qwen3-shaped decoder) and ``audio_decoder_config`` (the fast AR over codebooks). These classes read that
file as-is: the official field names (``dim``, ``n_layer``, ``n_head``, ``n_local_heads``, ...) are the
stored fields, the unused MoE/audio-projector fields are kept so a save writes them back, and the standard
transformers names (``hidden_size``, ``num_hidden_layers``, ...) are aliases, so caches, quantizers and
accelerate read the config like any other decoder's. The code reads the number of KV heads (grouped-query
attention) as ``num_key_value_heads``; ``n_local_heads`` is only its name in the file.

Defaults are the real s2-pro values: ``FishS2Config()`` describes the released model.
"""

from __future__ import annotations

import math
import os

from transformers import PretrainedConfig

from ..checkpoint import FishS2CheckpointError
from ..config_checks import check_model_size, require
from ..validation import short_repr

# Official field name → what transformers code expects to read. Shared by both transformer configs.
_TRANSFORMER_ALIASES = {
    "hidden_size": "dim",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
    "num_key_value_heads": "n_local_heads",
    "max_position_embeddings": "max_seq_len",
    "rms_norm_eps": "norm_eps",
    "rope_theta": "rope_base",
    "attention_dropout": "dropout",
}


class _FishS2TransformerConfig(PretrainedConfig):
    """Fields shared by the slow and the fast transformer (official names; defaults are s2-pro's)."""

    attribute_map = _TRANSFORMER_ALIASES

    vocab_size: int = 155776
    dim: int = 2560
    n_layer: int = 36
    n_head: int = 32
    n_local_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 9728
    rope_base: float = 1000000
    norm_eps: float = 1e-6
    max_seq_len: int = 32768
    dropout: float = 0.0
    tie_word_embeddings: bool = True
    attention_qkv_bias: bool = False
    attention_o_bias: bool = False
    attention_qk_norm: bool = True
    initializer_range: float = 0.01976423537605237
    # Present in the official file, unused by S2 (no audio projector, dense FFN, our own checkpointing switch).
    audio_hidden_dim: int = 5120
    moe_intermediate_size: int = 768
    use_moe: bool = False
    num_experts: int = 1
    num_experts_per_tok: int = 1
    norm_topk_prob: bool = True
    router_gamma: float = 0.001
    use_aux_loss_free: bool = False
    use_gradient_checkpointing: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)  # applies alias kwargs (hidden_size=...) before we validate
        self._validate_transformer()

    def _validate_transformer(self) -> None:
        name = type(self).__name__
        for field in (
            "vocab_size",
            "dim",
            "n_layer",
            "n_head",
            "n_local_heads",
            "head_dim",
            "intermediate_size",
            "max_seq_len",
        ):
            value = getattr(self, field)
            require(
                _is_int(value) and value > 0,
                f"{name}.{field} must be a positive integer, got {short_repr(value)}",
            )
        for field in ("rope_base", "norm_eps"):  # 0 or a negative value makes NaN hidden states, silently
            value = getattr(self, field)
            require(
                _is_real(value) and math.isfinite(value) and value > 0,
                f"{name}.{field} must be a finite number > 0, got {short_repr(value)}",
            )
        require(
            self.n_head % self.n_local_heads == 0,
            f"{name}: n_head ({self.n_head}) must be a multiple of n_local_heads ({self.n_local_heads}) for "
            "grouped-query attention",
        )
        require(
            self.head_dim % 2 == 0, f"{name}.head_dim must be even for rotary embeddings, got {self.head_dim}"
        )
        require(
            not self.use_moe and self.num_experts == 1,
            f"{name}: mixture-of-experts layers (use_moe={self.use_moe}, num_experts={self.num_experts}) are not "
            "part of S2 and are not implemented",
        )
        sizes = ", ".join(
            f"{field}={getattr(self, field)}"
            for field in ("n_layer", "dim", "vocab_size", "intermediate_size")
        )
        check_model_size(name, self.num_parameters, self.n_layer, sizes)

    def _layer_parameters(self) -> int:
        """Parameters of the decoder layers plus the final norm."""
        qkv = (self.n_head + 2 * self.n_local_heads) * self.head_dim
        per_layer = (
            self.dim * qkv
            + (qkv if self.attention_qkv_bias else 0)
            + self.n_head * self.head_dim * self.dim
            + (self.dim if self.attention_o_bias else 0)
            + (2 * self.head_dim if self.attention_qk_norm else 0)
            + 3 * self.dim * self.intermediate_size
            + 2 * self.dim
        )
        return self.n_layer * per_layer + self.dim


class FishS2TextConfig(_FishS2TransformerConfig):
    """The slow AR: a Qwen3-shaped decoder over text and semantic tokens (``text_config``)."""

    model_type = "fish_qwen3"
    base_config_key = "text_config"

    @property
    def num_parameters(self) -> int:
        """Parameter count of the slow AR this config builds (computed, nothing allocated)."""
        heads = 1 if self.tie_word_embeddings else 2  # input embeddings (+ an untied output head)
        return heads * self.vocab_size * self.dim + self._layer_parameters()


class FishS2FastTransformerConfig(_FishS2TransformerConfig):
    """The fast transformer over the codebooks of one frame (the "fast AR"; official key ``audio_decoder_config``).

    ``vocab_size`` is the codebook size (all ten fast heads are ``vocab_size``-way, though the codec's codebooks
    1…9 have 1024 entries), ``text_dim`` the width of the slow AR's hidden state it is fed (a projection is
    created when it differs from ``dim``).
    """

    model_type = "fish_qwen3_audio_decoder"
    base_config_key = "audio_decoder_config"
    attribute_map = {**_TRANSFORMER_ALIASES, "codebook_size": "vocab_size"}

    vocab_size: int = 4096
    n_layer: int = 4
    text_dim: int = 2560
    num_codebooks: int = 10
    max_seq_len: int = 11
    attention_qk_norm: bool = False
    tie_word_embeddings: bool = False
    use_bfloat16: bool = False

    @property
    def num_parameters(self) -> int:
        """Parameter count of the fast AR this config builds, codebook embeddings included (computed)."""
        project_in = (self.text_dim + 1) * self.dim if self.text_dim != self.dim else 0
        return (
            self.vocab_size * self.num_codebooks * self.text_dim  # codebook_embeddings
            + project_in
            + 2 * self.vocab_size * self.dim  # embeddings + output
            + self._layer_parameters()
        )

    def _validate_transformer(self) -> None:
        require(
            _is_int(self.num_codebooks) and self.num_codebooks > 0,
            "FishS2FastTransformerConfig.num_codebooks must be a positive integer, got "
            f"{short_repr(self.num_codebooks)}",
        )
        require(
            _is_int(self.text_dim) and self.text_dim > 0,
            f"FishS2FastTransformerConfig.text_dim must be a positive integer, got {short_repr(self.text_dim)}",
        )
        super()._validate_transformer()
        require(
            not self.tie_word_embeddings,
            "FishS2FastTransformerConfig.tie_word_embeddings=True is not supported: the fast AR's output head is its "
            "own `audio_decoder.output` weight",
        )


S2_SAMPLING_RATE = 44100
"""Sample rate of the S2 codec, whose codes this model generates."""


class FishS2Config(PretrainedConfig):
    """Fish Audio S2 Dual-AR text-to-speech model (``model_type = "fish_qwen3_omni"``).

    Args:
        text_config: slow AR configuration (dict or :class:`FishS2TextConfig`).
        audio_decoder_config: fast AR configuration (dict or :class:`FishS2FastTransformerConfig`).
        eos_token_id: ``<|im_end|>``, which ends an utterance.
        pad_token_id: ``<|pad|>``.
        audio_pad_token_id: ``<|audio_pad|>``.
        semantic_start_token_id / semantic_end_token_id: the inclusive id range of ``<|semantic:k|>`` tokens;
            token ``semantic_start_token_id + k`` carries codebook-0 code ``k``, so the range must have exactly
            ``audio_decoder_config.vocab_size`` (the codebook size) ids.
    """

    model_type = "fish_qwen3_omni"
    sub_configs_defaults = {
        "text_config": FishS2TextConfig,
        "audio_decoder_config": FishS2FastTransformerConfig,
    }

    text_config: dict | FishS2TextConfig | None = None
    audio_decoder_config: dict | FishS2FastTransformerConfig | None = None
    eos_token_id: int = 151645
    pad_token_id: int = 151669
    audio_pad_token_id: int = 151677
    semantic_start_token_id: int = 151678
    semantic_end_token_id: int = 155773
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)  # builds the sub-configs from dicts
        self._validate()

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> tuple[dict, dict]:
        """transformers' reader, but a missing ``config.json`` (or one without the two sub-configs) is an error:
        transformers would build the defaults, the full 4.56 B-parameter s2-pro, and random-initialise it."""
        where = os.path.join(os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        missing = [key for key in ("text_config", "audio_decoder_config") if not config_dict.get(key)]
        if missing:
            raise FishS2CheckpointError(
                f"{os.path.join(where, 'config.json')} is missing or incomplete (no {' / '.join(missing)}): the "
                "checkpoint is not complete; download it again"
            )
        return config_dict, kwargs

    @property
    def num_codebooks(self) -> int:
        return self.audio_decoder_config.num_codebooks

    @property
    def sampling_rate(self) -> int:
        """Rate of the audio this model's codes decode to (the S2 codec's 44.1 kHz; the codec's config says the
        same), here so generic text-to-speech code finds it on ``model.config`` as for other models."""
        return S2_SAMPLING_RATE

    @property
    def num_parameters(self) -> int:
        """Parameter count of the whole model (slow + fast AR), computed from the config."""
        return self.text_config.num_parameters + self.audio_decoder_config.num_parameters

    @property
    def codebook_size(self) -> int:
        return self.audio_decoder_config.vocab_size

    def _validate(self) -> None:
        text, fast = self.text_config, self.audio_decoder_config
        for field in ("semantic_start_token_id", "semantic_end_token_id"):
            value = getattr(self, field)
            require(_is_int(value), f"{field} must be an integer token id, got {short_repr(value)}")
        require(
            fast.text_dim == text.dim,
            f"audio_decoder_config.text_dim ({fast.text_dim}) must equal text_config.dim ({text.dim}): the fast AR is "
            "fed the slow AR's hidden state",
        )
        start, end = self.semantic_start_token_id, self.semantic_end_token_id
        require(
            0 <= start <= end < text.vocab_size,
            f"semantic token range [{start}, {end}] must lie inside the text vocabulary [0, {text.vocab_size})",
        )
        require(
            end - start + 1 == fast.vocab_size,
            f"the semantic token range [{start}, {end}] holds {end - start + 1} ids but the codebook size "
            f"(audio_decoder_config.vocab_size) is {fast.vocab_size}; they must be equal",
        )
        for field in ("eos_token_id", "pad_token_id", "audio_pad_token_id"):
            value = getattr(self, field)
            require(
                value is None or (_is_int(value) and 0 <= value < text.vocab_size),
                f"{field} must be one integer token id in the text vocabulary [0, {text.vocab_size}), got "
                f"{short_repr(value)}",
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
