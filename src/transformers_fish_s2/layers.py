"""Building blocks shared by the Dual-AR transformers and the codec's window transformers.

They reproduce the reference numerics (docs/reference-behaviour.md): RMSNorm normalises in fp32 and casts
back *before* the weight multiply; RoPE rotates interleaved pairs ``(x[2j], x[2j+1])`` in fp32 with a
cos/sin table that was rounded to bf16. cos/sin are computed from positions on demand, so no
32k-position table is ever materialised. Each is written with as few ATen calls as give the same bits: an
eager decode step is mostly per-op overhead besides the weight reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fish_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """:class:`FishS2RMSNorm`'s function: ``(x_f32 * rsqrt(mean(x_f32²) + eps)).to(x.dtype) * weight``."""
    if x.dtype == weight.dtype == torch.float32:  # no cast to order: one call, the same bits
        return F.rms_norm(x, weight.shape, weight, eps)
    return F.rms_norm(x.float(), weight.shape, eps=eps).type_as(x) * weight


class FishS2RMSNorm(nn.Module):
    """RMSNorm in the reference cast order: ``(x_f32 * rsqrt(mean(x_f32²) + eps)).to(x.dtype) * weight``."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fish_rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


def rope_inverse_frequencies(head_dim: int, base: float, device: torch.device | None = None) -> torch.Tensor:
    """``1 / base^(2j/head_dim)`` for j < head_dim/2, in fp32 (the reference's expression)."""
    exponents = torch.arange(0, head_dim, 2, device=device)[: head_dim // 2].float() / head_dim
    return 1.0 / (base**exponents)


def rope_cos_sin(
    positions: torch.Tensor, inv_freq: torch.Tensor, table_dtype: torch.dtype = torch.bfloat16
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for integer ``positions [..., T]`` → two ``[..., T, head_dim/2]`` fp32 tensors.

    The angle is computed in fp32 exactly like the reference table row for that position, then
    rounded to ``table_dtype`` (bf16, as the reference's table; the parity tests depend on it) and
    returned as fp32 so the rotation itself runs in fp32.
    """
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq.to(positions.device)
    cis = torch.polar(torch.ones_like(angles), angles)
    return _round_through(cis.real, table_dtype), _round_through(cis.imag, table_dtype)


def rotation_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``[..., head_dim/2]`` cos/sin of :func:`rope_cos_sin` as the ``[..., head_dim]`` tables that
    :func:`apply_interleaved_rope` multiplies by: each pair's cosine twice ``(c, c)`` and its sine with the
    pair's signs ``(-s, s)``. Built once per forward and shared by every layer."""
    return cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)


def _round_through(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """fp32 ``x`` rounded to ``dtype`` and returned as fp32.

    For bf16 the round-to-nearest-even is done on the bit pattern: TorchInductor drops a plain
    ``.to(bfloat16).float()`` round trip inside a fused kernel (``emulate_precision_casts`` is off by
    default), which would silently turn the compiled table back into an exact fp32 one. Same values as
    ``x.to(torch.bfloat16).float()`` for finite ``x``.
    """
    if dtype != torch.bfloat16:
        return x.to(dtype).float()
    bits = x.view(torch.int32)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.view(torch.float32)


_PAIR_SWAPS: dict[tuple[int, torch.device], torch.Tensor] = {}


def _pair_swap(head_dim: int, device: torch.device) -> torch.Tensor:
    """Indices ``1, 0, 3, 2, …`` (each interleaved pair swapped), made once per size and device."""
    swap = _PAIR_SWAPS.get((head_dim, device))
    if swap is None:
        swap = torch.arange(head_dim, device=device).view(-1, 2).flip(-1).flatten()
        _PAIR_SWAPS[(head_dim, device)] = swap
    return swap


def apply_interleaved_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x [..., D]`` by the tables of :func:`rotation_tables` (broadcast to ``x``).

    Pair ``(x0, x1)`` becomes ``(x0·c + x1·(-s), x1·c + x0·s)``, bit for bit the reference's
    ``(x0·c - x1·s, x1·c + x0·s)``; math in fp32, one rounding back to ``x.dtype`` at the end. Eager, the pairs
    are swapped by one ``index_select`` (a graph being compiled keeps the view-and-flip form); fp32 input is
    neither copied nor cast.
    """
    fp32 = x.dtype == torch.float32
    x_f32 = x if fp32 else x.float()
    if torch.compiler.is_compiling():
        swapped = x_f32.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x0) per pair
    else:
        swapped = x_f32.index_select(-1, _pair_swap(x.shape[-1], x.device))
    rotated = x_f32 * cos + swapped * sin
    return rotated if fp32 else rotated.type_as(x)


class FishS2FeedForward(nn.Module):
    """SwiGLU feed-forward ``w2(silu(w1 x) * w3 x)`` (w1 = gate, w3 = up, w2 = down; no biases)."""

    def __init__(self, dim: int, intermediate_size: int):
        super().__init__()
        self.w1 = nn.Linear(dim, intermediate_size, bias=False)
        self.w3 = nn.Linear(dim, intermediate_size, bias=False)
        self.w2 = nn.Linear(intermediate_size, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
