"""Convolutional building blocks of the codec (SPEC §6.2-6.4): Snake, causal convs, residual units, ConvNeXt.

All convolutions are causal (padded on the left only). Weight norm is folded into plain ``weight``
tensors when a checkpoint is loaded (see ``checkpoint.py``), so these are ordinary convolutions.
Every block takes an optional :class:`CodecStreamState`; with one, causal layers take their left
context from the previous chunk instead of zeros.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .streaming import CodecStreamState


class StreamingSequential(nn.Sequential):
    """``nn.Sequential`` whose layers all receive the (optional) streaming state."""

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, state)
        return x


class Snake1d(nn.Module):
    """Snake activation ``x + sin²(αx) / (α + 1e-9)`` with a learned per-channel α."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class CausalConv1d(nn.Module):
    """``Conv1d`` that pads ``dilation·(kernel-1) + 1 - stride`` zeros on the left, so output t sees inputs <= t.

    On the right the input is zero-padded up to a multiple of the stride (T inputs give ceil(T/stride)
    outputs), as in the reference.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups
        )
        self.stride = stride
        self.left_padding = dilation * (kernel_size - 1) + 1 - stride

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        if state is not None:
            if self.stride != 1:
                raise NotImplementedError(
                    "streaming is implemented for stride-1 convolutions (the decode path)"
                )
            return self.conv(state.prepend_context(self, x, self.left_padding))
        return self.conv(F.pad(x, (self.left_padding, -x.shape[-1] % self.stride)))


class CausalConvTranspose1d(nn.Module):
    """``ConvTranspose1d`` cut to ``T·stride`` outputs by dropping the incomplete tail on the right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        # Input frames that still overlap the outputs of the next frame (1 for kernel = 2·stride).
        self.context_frames = math.ceil(kernel_size / stride) - 1

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        frames = x.shape[-1]
        if state is not None:
            x = state.prepend_context(self, x, self.context_frames)
        start = (x.shape[-1] - frames) * self.stride  # outputs of the context frames were emitted before
        return self.conv(x)[..., start : start + frames * self.stride]


class ResidualUnit(nn.Module):
    """``x + conv1(snake(conv7_dilated(snake(x))))`` with causal convs (DAC residual unit)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = StreamingSequential(
            Snake1d(channels),
            CausalConv1d(channels, channels, kernel_size=7, dilation=dilation),
            Snake1d(channels),
            CausalConv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        return x + self.block(x, state)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv → LayerNorm → Linear(4C) → GELU → Linear(C) → ×γ, plus the input (rvq ConvNeXt)."""

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: int = 4):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        h = self.norm(self.dwconv(x, state).transpose(1, 2))
        h = self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + (self.gamma * h).transpose(1, 2)
