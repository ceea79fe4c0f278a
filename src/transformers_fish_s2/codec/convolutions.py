"""Convolutional building blocks of the codec: Snake, causal convs, residual units, ConvNeXt.

All convolutions are causal (padded on the left only). Weight norm is folded into plain ``weight``
tensors when a checkpoint is loaded (see ``checkpoint.py``), so these are ordinary convolutions.
Every block takes an optional :class:`CodecStreamState`; with one, causal layers take their left
context from the previous chunk instead of zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .stream_state import CodecStreamState


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
        if self.stride == 1:
            # Let the conv pad (no padded copy of x) and drop the outputs that saw its right padding.
            conv = self.conv
            out = F.conv1d(
                x,
                conv.weight,
                conv.bias,
                padding=self.left_padding,
                dilation=conv.dilation,
                groups=conv.groups,
            )
            return out[..., : x.shape[-1]]
        return self.conv(F.pad(x, (self.left_padding, -x.shape[-1] % self.stride)))


class CausalConvTranspose1d(nn.Module):
    """Transposed conv (kernel = taps·stride) cut to ``T·stride`` outputs by dropping the incomplete right tail.

    ``conv`` holds the weights in ``ConvTranspose1d`` layout; the forward computes the same function as one
    matmul (each input frame → ``taps`` blocks of ``stride`` samples) plus an overlap-add of the blocks.
    On CPU that is as fast as ``ConvTranspose1d`` on long inputs and up to ~8× faster on the short ones
    of a streaming chunk, where PyTorch falls back to a slow native kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        if kernel_size % stride:
            raise ValueError(f"kernel_size ({kernel_size}) must be a multiple of stride ({stride})")
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        self.taps = kernel_size // stride

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        frames = x.shape[-1]
        # The last taps-1 input frames of the previous chunk (zeros at the start) still add to our outputs.
        context = self.taps - 1
        x = F.pad(x, (context, 0)) if state is None else state.prepend_context(self, x, context)
        batch, in_channels, length = x.shape
        weight = self.conv.weight  # [in, out, taps·stride]
        blocks = (x.transpose(1, 2) @ weight.reshape(in_channels, -1)).view(
            batch, length, weight.shape[1], self.taps, self.stride
        )  # blocks[:, t, :, i] = what input frame t adds to output frame t + i
        out = blocks[:, context:, :, 0]
        for tap in range(1, self.taps):
            out = out + blocks[:, context - tap : length - tap, :, tap]
        out = out + self.conv.bias[:, None]
        return out.permute(0, 2, 1, 3).reshape(batch, -1, frames * self.stride)


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
