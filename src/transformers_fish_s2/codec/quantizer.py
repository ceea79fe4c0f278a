"""The codec's quantizer (reference ``DownsampleResidualVectorQuantize``).

Encoding: downsample the 86 Hz latent ×4 (causal strided conv + ConvNeXt, twice) → ``pre_module``
window transformer → one semantic VQ (codebook 0) → residual VQ over the rest. Decoding: sum the
projected codebook rows → ``post_module`` → upsample ×4 (transposed conv + ConvNeXt, twice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_codec import FishS2CodecConfig
from .convolutions import CausalConv1d, CausalConvTranspose1d, ConvNeXtBlock, StreamingSequential
from .stream_state import CodecStreamState
from .window_transformer import WindowTransformer


class VectorQuantizer(nn.Module):
    """One codebook: 1×1 projection to ``codebook_dim``, cosine nearest neighbour, raw row projected back."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int, with_input_projection: bool = True):
        super().__init__()
        if with_input_projection:
            self.in_proj = nn.Conv1d(dim, codebook_dim, kernel_size=1)
        self.out_proj = nn.Conv1d(codebook_dim, dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, C, T]`` → codes ``[B, T]`` and their contribution ``[B, C, T]`` to the reconstruction."""
        projected = self.in_proj(z)
        batch, codebook_dim, length = projected.shape
        vectors = F.normalize(projected.transpose(1, 2).reshape(-1, codebook_dim))
        codebook = F.normalize(self.codebook.weight)
        # Squared distance of unit vectors, written like the reference so near-ties round the same way.
        distance = (
            vectors.pow(2).sum(1, keepdim=True)
            - 2 * vectors @ codebook.t()
            + codebook.pow(2).sum(1, keepdim=True).t()
        )
        codes = distance.neg().max(dim=1).indices.view(batch, length)
        rows = self.codebook(codes).transpose(1, 2)
        # The reference's straight-through estimator `z_e + (z_q - z_e)` rounds differently from `z_q`;
        # the residual passed to the next codebook depends on it.
        return codes, self.out_proj(projected + (rows - projected))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, T]`` → ``[B, C, T]``."""
        return self.out_proj(self.codebook(codes).transpose(1, 2))


class ResidualVectorQuantizer(nn.Module):
    """Codebooks applied one after another, each to what the previous ones left unexplained."""

    def __init__(
        self,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        codebook_dim: int,
        with_input_projection: bool = True,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.quantizers = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, codebook_dim, with_input_projection)
            for _ in range(num_quantizers)
        )

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, C, T]`` → codes ``[B, n, T]`` and the quantized ``[B, C, T]``."""
        residual, quantized, codes = z, torch.zeros_like(z), []
        for quantizer in self.quantizers:
            code, contribution = quantizer.quantize(residual)
            quantized = quantized + contribution
            residual = residual - contribution
            codes.append(code)
        return torch.stack(codes, dim=1), quantized

    def decode(self, codes: torch.Tensor) -> torch.Tensor | float:
        """``codes [B, n, T]`` → sum of the codebooks' contributions ``[B, C, T]`` (0.0 without codebooks)."""
        total = 0.0
        for index, quantizer in enumerate(self.quantizers):
            total = total + quantizer.decode(codes[:, index])
        return total


class CodecQuantizer(nn.Module):
    """Semantic + residual VQ at 21.5 Hz, between a ×4 downsampler/upsampler and two window transformers."""

    def __init__(self, config: FishS2CodecConfig):
        super().__init__()
        dim = config.latent_dim
        encodes = not config.decoder_only
        self.semantic_quantizer = ResidualVectorQuantizer(
            dim, 1, config.semantic_codebook_size, config.codebook_dim, with_input_projection=encodes
        )
        self.quantizer = ResidualVectorQuantizer(
            dim,
            config.num_codebooks - 1,
            config.codebook_size,
            config.codebook_dim,
            with_input_projection=encodes,
        )

        def transformer() -> WindowTransformer:
            return WindowTransformer(
                dim,
                num_layers=config.quantizer_transformer_layers,
                num_heads=config.quantizer_transformer_heads,
                head_dim=config.quantizer_transformer_head_dim,
                intermediate_size=config.quantizer_transformer_intermediate_size,
                window_size=config.quantizer_transformer_window_size,
                rope_base=config.rope_base,
                norm_eps=config.norm_eps,
            )

        if encodes:
            self.downsample = nn.Sequential(
                *(
                    nn.Sequential(CausalConv1d(dim, dim, factor, stride=factor), ConvNeXtBlock(dim))
                    for factor in config.downsample_factor
                )
            )
            self.pre_module = transformer()
        self.post_module = transformer()
        self.upsample = StreamingSequential(
            *(
                StreamingSequential(
                    CausalConvTranspose1d(dim, dim, factor, stride=factor), ConvNeXtBlock(dim)
                )
                for factor in reversed(config.downsample_factor)
            )
        )

    def encode(self, latent: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, C, 4T]`` → codes ``[B, num_codebooks, T]`` (row 0 semantic)."""
        z = self.pre_module(self.downsample(latent))
        semantic_codes, semantic = self.semantic_quantizer.encode(z)
        residual_codes, _ = self.quantizer.encode(z - semantic)
        return torch.cat([semantic_codes, residual_codes], dim=1)

    def decode(self, codes: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        """In-range codes ``[B, num_codebooks, T]`` → decoder input ``[B, C, 4T]``."""
        z = self.semantic_quantizer.decode(codes[:, :1]) + self.quantizer.decode(codes[:, 1:])
        return self.upsample(self.post_module(z, state), state)
