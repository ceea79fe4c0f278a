"""The S2 codec ("modded DAC") as a transformers model: encode audio to codes, decode codes to audio.

44.1 kHz mono; one code frame = 2048 samples (21.53 Hz) with 10 codebooks (semantic 4096 + 9 × 1024).
The module tree reproduces the authors' ``DAC`` key names (``encoder.block.*``, ``quantizer.*``,
``decoder.model.*``) with weight norm folded into plain ``weight`` tensors, so ``codec.pth`` loads
after folding (``checkpoint.py``) and our own checkpoints are ordinary safetensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedAudioTokenizerBase
from transformers.utils import ModelOutput, cached_file

from ..checkpoint import FishS2CheckpointError, check_finite, check_safetensors_files, raise_on_mismatch
from ..config_checks import MAX_MODEL_BYTES, check_model_bytes
from ..layers import FishS2RMSNorm
from ..validation import HUB_KWARGS, dtype_itemsize, is_integer_tensor, parse_dtype
from .checkpoint import ENCODER_ONLY_KEY_PATTERNS, load_codec_state_dict, read_codec_checkpoint
from .configuration_codec import FishS2CodecConfig
from .convolutions import (
    CausalConv1d,
    CausalConvTranspose1d,
    ConvNeXtBlock,
    ResidualUnit,
    Snake1d,
    StreamingSequential,
)
from .quantizer import CodecQuantizer
from .stream_state import CodecStreamState
from .window_transformer import LayerScale, WindowTransformer

MAX_DECODE_FRAMES = 16384
"""Most frames one decode call takes (12.7 minutes at 21.5 frames/s; its audio is 134 MB of float32 per row).
Longer audio goes through :meth:`FishS2CodecModel.streaming_decoder`, chunk by chunk, in bounded memory."""

DECODE_CHUNK_FRAMES = 256
"""Frames the decoder runs on at once. Longer inputs are decoded chunk by chunk through the streaming state, so
memory stays bounded (the released codec needs about 12.5 MB per frame in one float32 pass on CPU, 3.2 GB for a
chunk) and the audio equals one pass to within float rounding (1e-5)."""


@dataclass
class FishS2CodecEncoderOutput(ModelOutput):
    r"""
    audio_codes (`torch.LongTensor` of shape `(batch_size, num_codebooks, frames)`):
        Codes per frame; row 0 is the semantic codebook. `frames = ceil(samples / frame_length)`.
    audio_code_lengths (`torch.LongTensor` of shape `(batch_size,)`):
        Valid frames per item, `ceil(valid_samples / frame_length)`; later frames encode padding.
    """

    audio_codes: torch.LongTensor | None = None
    audio_code_lengths: torch.LongTensor | None = None


@dataclass
class FishS2CodecDecoderOutput(ModelOutput):
    r"""
    audio_values (`torch.FloatTensor` of shape `(batch_size, 1, frames * frame_length)`):
        Decoded waveform in (-1, 1) at `sampling_rate`.
    """

    audio_values: torch.FloatTensor | None = None


@dataclass
class FishS2CodecOutput(ModelOutput):
    r"""
    audio_codes (`torch.LongTensor` of shape `(batch_size, num_codebooks, frames)`): see `FishS2CodecEncoderOutput`.
    audio_code_lengths (`torch.LongTensor` of shape `(batch_size,)`): see `FishS2CodecEncoderOutput`.
    audio_values (`torch.FloatTensor` of shape `(batch_size, 1, frames * frame_length)`): the decoded codes.
    """

    audio_codes: torch.LongTensor | None = None
    audio_code_lengths: torch.LongTensor | None = None
    audio_values: torch.FloatTensor | None = None


class EncoderBlock(nn.Module):
    """Three residual units at C/2 channels → Snake → strided causal conv to C (→ window transformer)."""

    def __init__(self, dim: int, stride: int, transformer_layers: int, config: FishS2CodecConfig):
        super().__init__()
        half = dim // 2
        layers = [
            ResidualUnit(half, dilation=1),
            ResidualUnit(half, dilation=3),
            ResidualUnit(half, dilation=9),
            Snake1d(half),
            CausalConv1d(half, dim, kernel_size=2 * stride, stride=stride),
        ]
        if transformer_layers:
            layers.append(
                WindowTransformer(
                    dim,
                    num_layers=transformer_layers,
                    num_heads=dim // 64,  # hard-wired in the reference
                    head_dim=config.encoder_transformer_head_dim,
                    intermediate_size=3 * dim,
                    window_size=config.encoder_transformer_window_size,
                    rope_base=config.rope_base,
                    norm_eps=config.norm_eps,
                )
            )
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class CodecEncoder(nn.Module):
    """Waveform ``[B, 1, L]`` → latent ``[B, latent_dim, L / hop_length]``."""

    def __init__(self, config: FishS2CodecConfig):
        super().__init__()
        dim = config.encoder_dim
        layers: list[nn.Module] = [CausalConv1d(1, dim, kernel_size=7)]
        for stride, transformer_layers in zip(config.encoder_rates, config.encoder_transformer_layers):
            dim *= 2
            layers.append(EncoderBlock(dim, stride, transformer_layers, config))
        layers += [Snake1d(dim), CausalConv1d(dim, config.latent_dim, kernel_size=3)]
        self.block = nn.Sequential(*layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.block(audio)


class DecoderBlock(nn.Module):
    """Snake → causal transposed conv (×stride, halves channels) → three residual units."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.block = StreamingSequential(
            Snake1d(in_dim),
            CausalConvTranspose1d(in_dim, out_dim, kernel_size=2 * stride, stride=stride),
            ResidualUnit(out_dim, dilation=1),
            ResidualUnit(out_dim, dilation=3),
            ResidualUnit(out_dim, dilation=9),
        )

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        return self.block(x, state)


class CodecDecoder(nn.Module):
    """Latent ``[B, latent_dim, T]`` → waveform ``[B, 1, T · prod(decoder_rates)]`` in (-1, 1)."""

    def __init__(self, config: FishS2CodecConfig):
        super().__init__()
        dims = [config.decoder_dim // 2**i for i in range(len(config.decoder_rates) + 1)]
        self.model = StreamingSequential(
            CausalConv1d(config.latent_dim, dims[0], kernel_size=7),
            *(DecoderBlock(dims[i], dims[i + 1], stride) for i, stride in enumerate(config.decoder_rates)),
            Snake1d(dims[-1]),
            CausalConv1d(dims[-1], 1, kernel_size=7),
        )

    def forward(self, latent: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        return torch.tanh(self.model(latent, state))


class FishS2CodecPreTrainedModel(PreTrainedAudioTokenizerBase):
    config_class = (
        FishS2CodecConfig  # explicit: annotations are strings under `from __future__ import annotations`
    )
    main_input_name = "input_values"
    # A decoder-only codec loaded from a full checkpoint skips the encode path's weights.
    _keys_to_ignore_on_load_unexpected = list(ENCODER_ONLY_KEY_PATTERNS)

    def _init_weights(self, module: nn.Module) -> None:
        """Random init for training from scratch / benchmarks (the reference's DAC and ConvNeXt inits)."""
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, Snake1d):
            init.ones_(module.alpha)
        elif isinstance(module, LayerScale):
            init.constant_(module.gamma, 1e-2)
        elif isinstance(module, ConvNeXtBlock):
            init.constant_(module.gamma, 1e-6)
        elif isinstance(module, FishS2RMSNorm):
            init.ones_(module.weight)


class FishS2CodecModel(FishS2CodecPreTrainedModel):
    """The S2 codec. ``encode`` audio → codes, ``decode`` codes → audio, ``streaming_decoder()`` for chunks.

    Load the official checkpoint with ``from_pretrained(<dir or repo with codec.pth>)`` or our saved
    layout with ``from_pretrained(<dir>, subfolder=...)``; ``decoder_only=True`` skips the encoder.
    """

    def __init__(self, config: FishS2CodecConfig):
        super().__init__(config)
        self.encoder = None if config.decoder_only else CodecEncoder(config)
        self.quantizer = CodecQuantizer(config)
        self.decoder = CodecDecoder(config)
        self.post_init()

    # ------------------------------------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------------------------------------

    def encode(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> FishS2CodecEncoderOutput:
        """Encode mono 44.1 kHz audio ``[B, 1, L]`` or ``[B, L]`` (float, in [-1, 1]) to codes ``[B, 10, ceil(L/2048)]``.

        ``padding_mask [B, L]`` (1 = real sample, right padding) gives per-item lengths; padded samples
        are treated as silence, so every item gets the codes it would get alone. The audio is
        right-padded with zeros to a multiple of ``frame_length`` (2048) like the reference.
        """
        if self.encoder is None:
            raise RuntimeError(
                "This codec was loaded with decoder_only=True; load it without it to encode audio."
            )
        audio = self._prepare_audio(input_values)
        batch, _, length = audio.shape
        if padding_mask is None:
            lengths = torch.full((batch,), length, dtype=torch.long, device=audio.device)
        else:
            if not isinstance(padding_mask, torch.Tensor) or padding_mask.shape != (batch, length):
                shape = (
                    tuple(padding_mask.shape)
                    if isinstance(padding_mask, torch.Tensor)
                    else type(padding_mask)
                )
                raise ValueError(
                    f"padding_mask must be a [batch, samples] = {(batch, length)} tensor, got {shape}"
                )
            padding_mask = padding_mask.to(audio.device)
            lengths = padding_mask.long().sum(-1)
            audio = audio * padding_mask[:, None].to(audio.dtype)
        frame_length = self.config.frame_length
        audio = F.pad(audio, (0, -length % frame_length))
        codes = self.quantizer.encode(self.encoder(audio))
        return FishS2CodecEncoderOutput(audio_codes=codes, audio_code_lengths=-(-lengths // frame_length))

    def decode(self, audio_codes: torch.Tensor) -> FishS2CodecDecoderOutput:
        """Decode codes ``[B, 10, T]`` to audio ``[B, 1, 2048·T]``, at most :data:`MAX_DECODE_FRAMES` frames (longer
        audio: :meth:`streaming_decoder`), :data:`DECODE_CHUNK_FRAMES` at a time.

        The caller's tensor is never modified. Ids above a codebook's last entry are clamped to it on a
        copy, as the reference does in place (the fast AR's 4096-way head can emit residual ids ≥ 1024,
        the fast transformer's 4096-way head can emit them); negative ids are an error.
        """
        codes = self._prepare_codes(audio_codes)
        return FishS2CodecDecoderOutput(audio_values=self._decode(codes))

    def forward(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> FishS2CodecOutput:
        """Round trip: ``encode`` then ``decode``."""
        encoded = self.encode(input_values, padding_mask)
        audio_values = self._decode(encoded.audio_codes)
        return FishS2CodecOutput(
            audio_codes=encoded.audio_codes,
            audio_code_lengths=encoded.audio_code_lengths,
            audio_values=audio_values,
        )

    def streaming_decoder(self, batch_size: int = 1) -> FishS2CodecStreamingDecoder:
        """A decoder that takes codes chunk by chunk (bounded work per chunk), e.g. as generation produces them."""
        return FishS2CodecStreamingDecoder(self, batch_size)

    # ------------------------------------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        subfolder: str = "",
        decoder_only: bool = False,
        codec_config: FishS2CodecConfig | dict | str | os.PathLike | None = None,
        **kwargs,
    ) -> FishS2CodecModel:
        """Load a codec from a local directory or Hub repo (looked up in ``subfolder``).

        * Official layout: ``codec.pth`` (read with ``torch.load(weights_only=True, mmap=True)``), its
          config from ``codec_config=``, else ``codec_config.json`` or ``codec_config.yaml`` (the authors'
          hydra format) beside it, else the defaults (= the official ``modded_dac_vq.yaml``). Accepted
          kwargs: ``dtype`` (default: the checkpoint's), ``device_map`` (one device) and Hub arguments.
        * Our layout: ``config.json`` + ``model.safetensors`` written by ``save_pretrained``; all of
          ``PreTrainedModel.from_pretrained``'s kwargs apply. Missing or wrongly-shaped weights raise.

        ``decoder_only=True`` builds and loads only what decoding needs (no encoder, ~140 M fewer params).
        ``max_model_bytes`` caps the weights' bytes, checked from the config before anything is built (default
        :data:`~transformers_fish_s2.config_checks.MAX_MODEL_BYTES`). Weights with NaN/inf values or
        non-floating dtypes are refused.
        """
        max_model_bytes = kwargs.pop("max_model_bytes", MAX_MODEL_BYTES)
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        path = os.fspath(pretrained_model_name_or_path)

        def find(filename: str) -> str | None:
            return cached_file(
                path,
                filename,
                subfolder=subfolder,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                **hub_kwargs,
            )

        config = (
            codec_config if codec_config is not None else kwargs.pop("config", None)
        )  # AutoModel passes config=
        if config is not None:
            config = FishS2CodecConfig.from_any(config)
        checkpoint = find("codec.pth")
        if checkpoint is not None:
            if config is None:
                config_file = find("codec_config.json") or find("codec_config.yaml")
                config = (
                    FishS2CodecConfig.from_codec_config_file(config_file)
                    if config_file
                    else FishS2CodecConfig()
                )
            for key in hub_kwargs:
                kwargs.pop(key)
            return cls._from_codec_pth(
                checkpoint, config, decoder_only=decoder_only, max_model_bytes=max_model_bytes, **kwargs
            )

        config_file = find("config.json")
        location = os.path.join(path, subfolder) if subfolder else path
        if config_file is None:
            raise OSError(
                f"No codec found in {location!r}: expected codec.pth (official layout, optionally with "
                "codec_config.yaml/.json) or config.json + model.safetensors from FishS2CodecModel.save_pretrained. "
                "For a Hub repo, check the name and that you are online or have it cached."
            )
        if config is None:
            config_dict, _ = FishS2CodecConfig.get_config_dict(path, subfolder=subfolder, **hub_kwargs)
            if config_dict.get("model_type") != FishS2CodecConfig.model_type:
                raise OSError(
                    f"{config_file} describes a {config_dict.get('model_type')!r} model, not the codec, and there is "
                    f"no codec.pth in {location!r}. Pass subfolder= to point at the codec."
                )
            config = FishS2CodecConfig.from_dict(config_dict)
        if decoder_only:
            config.decoder_only = True
        _check_bytes(config, kwargs.get("dtype", kwargs.get("torch_dtype")), max_model_bytes)
        if os.path.isdir(location):
            check_safetensors_files(Path(location))
        return_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path,
                *model_args,
                subfolder=subfolder,
                config=config,
                output_loading_info=True,
                **kwargs,
            )
        except SafetensorError as error:
            raise FishS2CheckpointError(
                f"Could not read the codec weights in {location!r}: {error}. The file is probably truncated or "
                "corrupted; download or save it again."
            ) from error
        raise_on_mismatch(
            cls.__name__,
            location,
            missing=info["missing_keys"],
            unexpected=info["unexpected_keys"],
            mismatched=info["mismatched_keys"],
            hint="is config.json from the same save?",
        )
        check_finite(model.named_parameters(), location)
        return (model, info) if return_info else model

    @classmethod
    def _from_codec_pth(
        cls,
        checkpoint: str,
        config: FishS2CodecConfig,
        decoder_only: bool = False,
        dtype: torch.dtype | str | None = None,
        device_map: str | torch.device | None = None,
        max_model_bytes: int = MAX_MODEL_BYTES,
        **unsupported,
    ) -> FishS2CodecModel:
        if unsupported:
            raise TypeError(f"Unsupported arguments for loading codec.pth: {sorted(unsupported)}")
        if isinstance(dtype, str):
            dtype = None if dtype == "auto" else parse_dtype(dtype)
        if device_map == "auto":  # the codec fits on one device
            device_map = "cuda" if torch.cuda.is_available() else "cpu"
        if device_map is not None and not isinstance(device_map, (str, torch.device, int)):
            raise TypeError(
                "device_map for codec.pth must be a single device (e.g. 'cuda:0'); the codec is not sharded"
            )
        if decoder_only:
            config.decoder_only = True
        _check_bytes(config, dtype, max_model_bytes)
        with torch.device("meta"):
            model = cls(config)
        load_codec_state_dict(model, read_codec_checkpoint(checkpoint), dtype, checkpoint)
        config.dtype = model.dtype
        if device_map is not None:
            model.to(device_map)
        return model.eval()

    # ------------------------------------------------------------------------------------------------
    # Internals
    # ------------------------------------------------------------------------------------------------

    def _decode(self, codes: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        frames = codes.shape[-1]
        if frames > MAX_DECODE_FRAMES:
            raise ValueError(
                f"audio_codes has {frames} frames; one decode call takes at most {MAX_DECODE_FRAMES} "
                "(MAX_DECODE_FRAMES): decode longer audio chunk by chunk with codec.streaming_decoder()"
            )
        if frames == 0:
            return torch.zeros(codes.shape[0], 1, 0, dtype=self.dtype, device=self.device)
        if frames <= DECODE_CHUNK_FRAMES:
            return self.decoder(self.quantizer.decode(codes, state), state)
        state = CodecStreamState() if state is None else state
        chunks = codes.split(DECODE_CHUNK_FRAMES, dim=-1)
        return torch.cat([self.decoder(self.quantizer.decode(chunk, state), state) for chunk in chunks], dim=-1)

    def _prepare_codes(self, audio_codes: torch.Tensor) -> torch.Tensor:
        """Validate ``[B, num_codebooks, T]`` integer codes; return an in-range copy on the model's device."""
        num_codebooks = self.config.num_codebooks
        if not isinstance(audio_codes, torch.Tensor):
            raise TypeError(f"audio_codes must be a torch.Tensor, got {type(audio_codes).__name__}")
        if audio_codes.dim() != 3 or audio_codes.shape[1] != num_codebooks:
            hint = " (add a batch dimension: codes[None])" if audio_codes.dim() == 2 else ""
            raise ValueError(
                f"audio_codes must have shape [batch, {num_codebooks}, frames], got {tuple(audio_codes.shape)}{hint}"
            )
        if audio_codes.shape[0] == 0:
            raise ValueError(
                f"audio_codes has batch size 0 (shape {tuple(audio_codes.shape)}); batch must be >= 1"
            )
        if not is_integer_tensor(audio_codes):
            raise TypeError(f"audio_codes must be an integer tensor, got {audio_codes.dtype}")
        if audio_codes.numel() and (lowest := int(audio_codes.min())) < 0:
            raise ValueError(f"audio_codes must be >= 0, got a minimum of {lowest}")
        limits = torch.tensor(
            [self.config.semantic_codebook_size - 1] + [self.config.codebook_size - 1] * (num_codebooks - 1),
            device=self.device,
        )
        return torch.minimum(audio_codes.to(self.device, torch.long), limits[:, None])

    def _prepare_audio(self, input_values: torch.Tensor) -> torch.Tensor:
        """Validate mono float audio ``[B, L]`` / ``[B, 1, L]``; return ``[B, 1, L]`` in the model's dtype/device."""
        if not isinstance(input_values, torch.Tensor):
            raise TypeError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}")
        if input_values.dim() == 2:
            input_values = input_values[:, None]
        if input_values.dim() != 3 or input_values.shape[1] != 1:
            raise ValueError(
                f"input_values must be mono audio of shape [batch, samples] or [batch, 1, samples], "
                f"got {tuple(input_values.shape)}"
            )
        if input_values.shape[0] == 0:
            raise ValueError(
                f"input_values has batch size 0 (shape {tuple(input_values.shape)}); batch must be >= 1"
            )
        if not input_values.is_floating_point():
            raise TypeError(f"input_values must be float audio in [-1, 1], got {input_values.dtype}")
        if input_values.shape[-1] == 0:
            raise ValueError("input_values is empty (0 samples)")
        if not bool(torch.isfinite(input_values).all()):
            raise ValueError("input_values contains NaN or infinite samples")
        return input_values.to(self.device, self.dtype)


def _check_bytes(config: FishS2CodecConfig, dtype: torch.dtype | str | None, max_model_bytes: int) -> None:
    """The codec loads in float32 unless ``dtype`` says otherwise."""
    check_model_bytes("FishS2CodecModel", config.num_parameters, dtype_itemsize(dtype), max_model_bytes)


class FishS2CodecStreamingDecoder:
    """Decode codes chunk by chunk; concatenating the chunks' audio equals ``codec.decode`` of all codes.

    Each chunk costs work proportional to its own length: the decoder keeps only each causal layer's
    left context (a few samples per conv, ``window - 1`` keys/values per transformer layer) between
    calls. Runs without autograd so that state never holds a graph. ``reset()`` starts a new stream.
    """

    def __init__(self, codec: FishS2CodecModel, batch_size: int = 1):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.codec = codec
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        self._state = CodecStreamState()
        self.frames_decoded = 0

    @torch.no_grad()
    def decode_chunk(self, audio_codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, 10, t]`` (the next t frames) → audio ``[B, 1, 2048·t]``; same clamping/validation as ``decode``."""
        codes = self.codec._prepare_codes(audio_codes)
        if codes.shape[0] != self.batch_size:
            raise ValueError(
                f"this streaming decoder was made for batch_size={self.batch_size}, got {codes.shape[0]}"
            )
        audio = self.codec._decode(codes, self._state)
        self.frames_decoded += codes.shape[-1]
        return audio
