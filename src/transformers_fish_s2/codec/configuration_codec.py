"""Configuration of the S2 codec (the "modded DAC").

Defaults are the official ``fish_speech/configs/modded_dac_vq.yaml``. The authors ship that file as a
hydra config; :meth:`FishS2CodecConfig.from_hydra` reads it (plain YAML, anchors included) without
hydra or omegaconf. The file is untrusted input: :class:`BoundedYAMLLoader` refuses alias bombs and deep
nesting, and error messages show values cut short (:func:`~transformers_fish_s2.validation.short_repr`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import yaml
from transformers import PreTrainedConfig

from ..checkpoint import require_file
from ..config_checks import check_model_size
from ..validation import short_repr

MAX_CONFIG_FILE_BYTES = 2**20
"""Largest codec config file read (1 MiB; the official one is 2 KB)."""

MAX_YAML_NODES = 10_000
"""Most values a codec config may hold once YAML aliases are expanded (the official file has about 100). An alias
bomb is a few KB on disk and expands to billions of values."""

MAX_YAML_DEPTH = 64
"""Deepest nesting accepted in a codec config (the official file nests 4 levels)."""


class BoundedYAMLLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python object tags) that refuses nesting deeper than :data:`MAX_YAML_DEPTH` while
    composing, before Python's recursion limit is near. Use :func:`load_bounded_yaml`, which also bounds the
    expanded size; aliases themselves stay allowed (the official ``modded_dac_vq.yaml`` uses one)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nesting deeper than {MAX_YAML_DEPTH} levels (MAX_YAML_DEPTH)")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_bounded_yaml(stream) -> Any:
    """Parse one YAML document, refusing it when its aliases expand to more than :data:`MAX_YAML_NODES` values
    (or form a cycle) before any Python object is built."""
    loader = BoundedYAMLLoader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise yaml.YAMLError(
                f"its aliases expand to more than {MAX_YAML_NODES} values (MAX_YAML_NODES); refused as an alias bomb"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int | None]) -> int:
    """Values in ``node`` with every alias expanded, computed once per node (so a bomb costs nothing to measure);
    stops counting past :data:`MAX_YAML_NODES`."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise yaml.YAMLError("an alias refers to a node that contains it (a cycle)")
        return sizes[key]
    sizes[key] = None
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = []
    size = 1
    for child in children:
        size += _expanded_size(child, sizes)
        if size > MAX_YAML_NODES:
            break
    sizes[key] = size
    return size


# Keys of the authors' hydra config that only matter for training or for hydra itself.
_HYDRA_IGNORED_KEYS = frozenset(
    {
        "_target_",
        "_partial_",
        "block_size",
        "dropout_rate",
        "attn_dropout_rate",
        "quantizer_dropout",
        "channels_first",
        "causal",
        "n_local_heads",
    }
)
_POSITIVE_FIELDS = (
    "sampling_rate",
    "encoder_dim",
    "encoder_transformer_head_dim",
    "encoder_transformer_window_size",
    "decoder_dim",
    "num_codebooks",
    "semantic_codebook_size",
    "codebook_size",
    "codebook_dim",
    "quantizer_transformer_heads",
    "quantizer_transformer_head_dim",
    "quantizer_transformer_intermediate_size",
    "quantizer_transformer_window_size",
)
_POSITIVE_LIST_FIELDS = ("encoder_rates", "decoder_rates", "downsample_factor")


class FishS2CodecConfig(PreTrainedConfig):
    r"""Hyper-parameters of the S2 codec: causal 44.1 kHz modded DAC with 10 codebooks.

    Args:
        sampling_rate: audio sample rate in Hz (the YAML's ``sample_rate``).
        encoder_dim: channels of the first encoder conv; doubled by each encoder block, so the latent
            has ``encoder_dim * 2**len(encoder_rates)`` channels (1024).
        encoder_rates: strides of the encoder blocks (their product is ``hop_length`` = 512).
        encoder_transformer_layers: window-transformer layers after each encoder block.
        encoder_transformer_head_dim: head size of the encoder transformers; they have ``dim // 64`` heads
            and an FFN of ``3 * dim`` (hard-wired in the reference).
        encoder_transformer_window_size: causal attention window of the encoder transformers. The YAML
            does not set it; the reference falls back to 512.
        decoder_dim: channels of the first decoder conv; halved by each decoder block.
        decoder_rates: strides of the decoder's transposed convs.
        num_codebooks: total codebooks per frame: 1 semantic + ``num_codebooks - 1`` residual.
        semantic_codebook_size: entries of codebook 0.
        codebook_size: entries of each residual codebook.
        codebook_dim: size of a codebook vector.
        downsample_factor: strides of the quantizer's extra down/up-sampling stages (frame = 512·4 samples).
        quantizer_transformer_layers / _heads / _head_dim / _intermediate_size / _window_size: the two
            window transformers around the quantizer (``pre_module`` for encoding, ``post_module`` for
            decoding).
        rope_base: RoPE base of every codec transformer.
        norm_eps: RMSNorm epsilon of every codec transformer.
        decoder_only: build (and load) only what decoding needs: no encoder, no quantizer downsampling,
            no ``pre_module`` and no codebook input projections.
    """

    model_type = "fish_s2_codec"
    attribute_map = {"sample_rate": "sampling_rate"}

    sampling_rate: int = 44100
    encoder_dim: int = 64
    encoder_rates: list[int] | tuple[int, ...] = (2, 4, 8, 8)
    encoder_transformer_layers: list[int] | tuple[int, ...] = (0, 0, 0, 4)
    encoder_transformer_head_dim: int = 64
    encoder_transformer_window_size: int = 512
    decoder_dim: int = 1536
    decoder_rates: list[int] | tuple[int, ...] = (8, 8, 4, 2)
    num_codebooks: int = 10
    semantic_codebook_size: int = 4096
    codebook_size: int = 1024
    codebook_dim: int = 8
    downsample_factor: list[int] | tuple[int, ...] = (2, 2)
    quantizer_transformer_layers: int = 8
    quantizer_transformer_heads: int = 16
    quantizer_transformer_head_dim: int = 64
    quantizer_transformer_intermediate_size: int = 3072
    quantizer_transformer_window_size: int = 128
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    decoder_only: bool = False

    def __post_init__(self, **kwargs):
        self.encoder_rates = list(self.encoder_rates)
        self.encoder_transformer_layers = list(self.encoder_transformer_layers)
        self.decoder_rates = list(self.decoder_rates)
        self.downsample_factor = list(self.downsample_factor)
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for field in _POSITIVE_FIELDS:
            value = getattr(self, field)
            if not is_int(value) or value < 1:
                raise ValueError(
                    f"FishS2CodecConfig.{field} must be a positive integer, got {short_repr(value)}"
                )
        for field in ("rope_base", "norm_eps"):  # 0 or a negative value makes NaN audio, silently
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf):
                raise ValueError(
                    f"FishS2CodecConfig.{field} must be a finite number > 0, got {short_repr(value)}"
                )
        for field in _POSITIVE_LIST_FIELDS:
            values = getattr(self, field)
            if not values or not all(is_int(v) and v >= 1 for v in values):
                raise ValueError(
                    f"FishS2CodecConfig.{field} must be a non-empty list of positive integers, got {short_repr(values)}"
                )
        layers = [*self.encoder_transformer_layers, self.quantizer_transformer_layers]
        if not all(is_int(v) and v >= 0 for v in layers):
            raise ValueError(
                "FishS2CodecConfig.encoder_transformer_layers / quantizer_transformer_layers must be integers >= 0, "
                f"got {short_repr(self.encoder_transformer_layers)} / {short_repr(self.quantizer_transformer_layers)}"
            )
        if len(self.encoder_transformer_layers) != len(self.encoder_rates):
            raise ValueError(
                f"encoder_transformer_layers needs one entry per encoder block ({len(self.encoder_rates)}), "
                f"got {self.encoder_transformer_layers}"
            )
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise ValueError(
                f"decoder_dim ({self.decoder_dim}) must be divisible by 2**len(decoder_rates) "
                f"({2 ** len(self.decoder_rates)}): each decoder block halves the channels"
            )
        blocks = len(self.encoder_rates) + len(self.decoder_rates) + len(self.downsample_factor)
        check_model_size(
            "FishS2CodecConfig",
            self.num_parameters,
            blocks + sum(self.encoder_transformer_layers) + 2 * self.quantizer_transformer_layers,
            f"encoder_dim={self.encoder_dim}, decoder_dim={self.decoder_dim}, "
            f"quantizer_transformer_layers={self.quantizer_transformer_layers}",
        )

    @property
    def num_parameters(self) -> int:
        """The codec's parameter count from its convolutions, linears and codebooks (computed, nothing allocated;
        biases, norms and Snake scales, under 0.1 % of the released codec, are left out)."""
        latent = self.latent_dim

        def transformer(dim: int, layers: int, heads: int, head_dim: int, intermediate: int) -> int:
            return layers * (4 * dim * heads * head_dim + 3 * dim * intermediate)

        def residual_units(channels: int) -> int:  # three of them: a kernel-7 and a kernel-1 conv each
            return 3 * 8 * channels * channels

        quantizer_transformer = transformer(
            latent,
            self.quantizer_transformer_layers,
            self.quantizer_transformer_heads,
            self.quantizer_transformer_head_dim,
            self.quantizer_transformer_intermediate_size,
        )
        resample = sum(latent * latent * factor + 8 * latent * latent for factor in self.downsample_factor)
        codebooks = (
            self.semantic_codebook_size + (self.num_codebooks - 1) * self.codebook_size
        ) * self.codebook_dim
        dims = [self.decoder_dim // 2**i for i in range(len(self.decoder_rates) + 1)]
        decoder = (
            7 * latent * dims[0]
            + 7 * dims[-1]
            + sum(
                2 * stride * dims[i] * dims[i + 1] + residual_units(dims[i + 1])
                for i, stride in enumerate(self.decoder_rates)
            )
        )
        total = (
            decoder
            + quantizer_transformer
            + resample
            + codebooks
            + self.num_codebooks * self.codebook_dim * latent
        )
        if self.decoder_only:
            return total
        encoder, dim = 7 * self.encoder_dim + 3 * latent * latent, self.encoder_dim
        for stride, layers in zip(self.encoder_rates, self.encoder_transformer_layers):
            dim *= 2
            encoder += residual_units(dim // 2) + dim * dim // 2 * 2 * stride
            encoder += transformer(dim, layers, dim // 64, self.encoder_transformer_head_dim, 3 * dim)
        encoder_only = quantizer_transformer + resample + self.num_codebooks * self.codebook_dim * latent
        return total + encoder + encoder_only

    @property
    def latent_dim(self) -> int:
        """Channels of the encoder output / decoder input (and of the quantizer's transformers)."""
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def hop_length(self) -> int:
        """Samples per encoder latent step (the reference's ``codec.hop_length``)."""
        return math.prod(self.encoder_rates)

    @property
    def frame_length(self) -> int:
        """Samples per code frame: the encoder hop times the quantizer's extra downsampling (2048)."""
        return self.hop_length * math.prod(self.downsample_factor)

    @property
    def frame_rate(self) -> float:
        """Code frames per second (21.53 Hz)."""
        return self.sampling_rate / self.frame_length

    # ------------------------------------------------------------------------------------------------
    # The authors' hydra config
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def from_hydra(cls, hydra_config: dict[str, Any], **kwargs) -> FishS2CodecConfig:
        """Build the config from the authors' hydra dict (``modded_dac_vq.yaml`` already parsed).

        Every architecture key is mapped; keys that only concern training or hydra are ignored; any
        other key raises, so an unfamiliar config never silently builds a different codec.
        """
        top = dict(hydra_config)
        general = dict(top.pop("transformer_general_config", None) or {})
        has_quantizer = "quantizer" in top
        quantizer = dict(top.pop("quantizer", None) or {})
        post_module, pre_module = quantizer.pop("post_module", None), quantizer.pop("pre_module", None)
        if has_quantizer and (not post_module or pre_module != post_module):
            raise ValueError(
                "codec config: quantizer.pre_module and quantizer.post_module must be the same window transformer "
                "(as in modded_dac_vq.yaml); other quantizer layouts are not supported"
            )
        post_module = dict(post_module or {})
        quantizer_transformer = dict(post_module.pop("config", None) or {})

        values: dict[str, Any] = {}
        _take(
            top,
            values,
            {
                "sample_rate": "sampling_rate",
                "encoder_dim": "encoder_dim",
                "encoder_rates": "encoder_rates",
                "decoder_dim": "decoder_dim",
                "decoder_rates": "decoder_rates",
                "encoder_transformer_layers": "encoder_transformer_layers",
            },
        )
        # The decoder blocks build a transformer but leave it out of the network, so it has no weights.
        top.pop("decoder_transformer_layers", None)
        latent_dim = top.pop("latent_dim", None)
        _take(
            general,
            values,
            {
                "head_dim": "encoder_transformer_head_dim",
                "rope_base": "rope_base",
                "norm_eps": "norm_eps",
            },
        )
        # The reference reads the encoder window with getattr(<functools.partial>, "window_size", 512),
        # which is 512 whatever the YAML says, and ModelArgs.window_size itself is unused.
        general.pop("window_size", None)
        if general.pop("n_head", None) is not None or general.pop("dim", None) is not None:
            raise ValueError(
                "codec config: transformer_general_config may not set n_head/dim (derived per block)"
            )
        n_residual = quantizer.pop("n_codebooks", None)
        if n_residual is not None:
            values["num_codebooks"] = int(n_residual) + 1
        input_dim = quantizer.pop("input_dim", None)
        _take(
            quantizer,
            values,
            {
                "codebook_size": "codebook_size",
                "codebook_dim": "codebook_dim",
                "semantic_codebook_size": "semantic_codebook_size",
                "downsample_factor": "downsample_factor",
            },
        )
        _take(post_module, values, {"window_size": "quantizer_transformer_window_size"})
        transformer_input_dim = post_module.pop("input_dim", None)
        transformer_dim = quantizer_transformer.pop("dim", None)
        _take(
            quantizer_transformer,
            values,
            {
                "n_layer": "quantizer_transformer_layers",
                "n_head": "quantizer_transformer_heads",
                "head_dim": "quantizer_transformer_head_dim",
                "intermediate_size": "quantizer_transformer_intermediate_size",
            },
        )
        for key, reference in (
            ("rope_base", quantizer_transformer.pop("rope_base", None)),
            ("norm_eps", quantizer_transformer.pop("norm_eps", None)),
        ):
            if (
                reference is not None
                and key in values
                and _number(key, reference) != _number(key, values[key])
            ):
                raise ValueError(
                    f"codec config: quantizer transformers and encoder transformers differ in {key}"
                )
            if reference is not None:
                values.setdefault(key, reference)

        sections = {
            "": top,
            "transformer_general_config": general,
            "quantizer": quantizer,
            "quantizer.post_module": post_module,
            "quantizer.post_module.config": quantizer_transformer,
        }
        leftovers = sorted(
            f"{section}.{key}" if section else key
            for section, mapping in sections.items()
            for key in mapping
            if key not in _HYDRA_IGNORED_KEYS
        )
        if leftovers:
            raise ValueError(f"codec config: unsupported keys {short_repr(leftovers)}")
        for key in ("rope_base", "norm_eps"):  # YAML reads "1e-5" (no dot) as a string
            if key in values:
                values[key] = _number(key, values[key])

        config = cls(**values, **kwargs)
        expected_dim = config.latent_dim
        for name, dim in (
            ("latent_dim", latent_dim),
            ("quantizer.input_dim", input_dim),
            ("quantizer.post_module.input_dim", transformer_input_dim),
            ("quantizer.post_module.config.dim", transformer_dim),
        ):
            if dim is not None and int(dim) != expected_dim:
                raise ValueError(
                    f"codec config: {name}={short_repr(dim)} but the encoder produces {expected_dim} channels "
                    "(encoder_dim * 2**len(encoder_rates)); other widths are not supported"
                )
        if config.encoder_transformer_head_dim != 64 and any(config.encoder_transformer_layers):
            raise ValueError(
                "codec config: the reference gives encoder transformers dim // 64 heads whatever head_dim is; "
                f"head_dim={config.encoder_transformer_head_dim} is not supported"
            )
        return config

    @classmethod
    def from_codec_config_file(cls, path: str | os.PathLike, **kwargs) -> FishS2CodecConfig:
        """Read ``codec_config.yaml`` (authors' hydra format) or ``codec_config.json`` (ours or hydra-style)."""
        path = require_file(path, MAX_CONFIG_FILE_BYTES)
        try:
            with open(path, encoding="utf-8") as handle:
                data = load_bounded_yaml(handle) if path.suffix in (".yaml", ".yml") else json.load(handle)
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not a valid codec config file: {error}") from error
        except RecursionError:  # json nests without limit
            raise ValueError(f"{path} is not a valid codec config file: it nests too deeply") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        return cls.from_any(data, **kwargs)

    @classmethod
    def from_any(cls, config: FishS2CodecConfig | dict | str | os.PathLike, **kwargs) -> FishS2CodecConfig:
        """Accept a config object, a hydra dict (has ``_target_``), one of our dicts, or a file path."""
        if isinstance(config, cls):
            return config
        if isinstance(config, (str, os.PathLike)):
            return cls.from_codec_config_file(config, **kwargs)
        if isinstance(config, dict):
            if "_target_" in config:
                return cls.from_hydra(config, **kwargs)
            data = {k: v for k, v in config.items() if k not in ("model_type", "transformers_version")}
            return cls(**data, **kwargs)
        raise TypeError(
            "codec_config must be a FishS2CodecConfig, a dict, or a path to codec_config.yaml/.json; "
            f"got {type(config).__name__}"
        )


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"codec config: {key} must be a number, got {short_repr(value)}") from None


def _take(source: dict[str, Any], target: dict[str, Any], mapping: dict[str, str]) -> None:
    """Move ``source[key]`` to ``target[mapping[key]]`` for every key present."""
    for key, name in mapping.items():
        if key in source:
            target[name] = source.pop(key)
