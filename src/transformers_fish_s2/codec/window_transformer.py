"""The codec's causal sliding-window transformer (reference ``WindowLimitedTransformer``).

Pre-norm blocks with fused ``wqkv``, interleaved RoPE (bf16-rounded table), LayerScale on both
branches and a SwiGLU FFN; a query at position t attends to keys t-w+1..t. Masks and RoPE angles are
built from positions, block by block, so memory is O(T·w) instead of the reference's 32768² mask and
327 680-position table. With a :class:`CodecStreamState` the keys/values of the last ``w - 1``
positions are carried to the next chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (
    FishS2FeedForward,
    FishS2RMSNorm,
    apply_interleaved_rope,
    rope_cos_sin,
    rope_inverse_frequencies,
    rotation_tables,
)
from .stream_state import CodecStreamState


def window_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, query_start: int, key_start: int, window: int
) -> torch.Tensor:
    """Causal sliding-window attention of ``query [B,H,Tq,D]`` over ``key/value [B,H,Tk,D]``.

    Query i sits at position ``query_start + i``, key j at ``key_start + j``; a query at p sees keys at
    p-window+1..p. Queries are processed in blocks of ``window`` so each SDPA call sees at most
    ``2·window - 1`` keys and a boolean mask built from positions.
    """
    outputs = []
    for block_start in range(0, query.shape[2], window):
        block_end = min(block_start + window, query.shape[2])
        first_key = max(0, query_start + block_start - window + 1 - key_start)
        last_key = query_start + block_end - key_start  # exclusive
        query_pos = torch.arange(query_start + block_start, query_start + block_end, device=query.device)
        key_pos = torch.arange(key_start + first_key, key_start + last_key, device=query.device)
        offset = query_pos[:, None] - key_pos[None, :]
        mask = (offset >= 0) & (offset < window)
        outputs.append(
            F.scaled_dot_product_attention(
                query[:, :, block_start:block_end],
                key[:, :, first_key:last_key],
                value[:, :, first_key:last_key],
                attn_mask=mask,
            )
        )
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, window_size: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.window_size = window_size
        self.wqkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=False)
        self.wo = nn.Linear(num_heads * head_dim, dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        start: int,
        state: CodecStreamState | None = None,
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        query, key, value = (
            self.wqkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        )
        query = apply_interleaved_rope(query, cos, sin)
        key = apply_interleaved_rope(key, cos, sin)
        key_start = start
        if state is not None:
            past = state.get(self)
            if past is not None:
                key = torch.cat([past[0], key], dim=2)
                value = torch.cat([past[1], value], dim=2)
                key_start -= past[0].shape[2]
            keep = min(self.window_size - 1, key.shape[2])
            state.set(
                self, (key[:, :, key.shape[2] - keep :].clone(), value[:, :, value.shape[2] - keep :].clone())
            )
        out = window_attention(query, key, value, start, key_start, self.window_size)
        return self.wo(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1e-2):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class WindowTransformerBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        intermediate_size: int,
        window_size: int,
        norm_eps: float,
    ):
        super().__init__()
        self.attention = WindowAttention(dim, num_heads, head_dim, window_size)
        self.feed_forward = FishS2FeedForward(dim, intermediate_size)
        self.attention_norm = FishS2RMSNorm(dim, eps=norm_eps)
        self.ffn_norm = FishS2RMSNorm(dim, eps=norm_eps)
        self.attention_layer_scale = LayerScale(dim)
        self.ffn_layer_scale = LayerScale(dim)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        start: int,
        state: CodecStreamState | None,
    ) -> torch.Tensor:
        h = x + self.attention_layer_scale(self.attention(self.attention_norm(x), cos, sin, start, state))
        return h + self.ffn_layer_scale(self.feed_forward(self.ffn_norm(h)))


class WindowTransformer(nn.Module):
    """Causal window transformer on channels-first ``[B, C, T]`` input, output in the same layout."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        intermediate_size: int,
        window_size: int,
        rope_base: float,
        norm_eps: float,
    ):
        super().__init__()
        self.head_dim = head_dim
        self.rope_base = rope_base
        self.layers = nn.ModuleList(
            WindowTransformerBlock(dim, num_heads, head_dim, intermediate_size, window_size, norm_eps)
            for _ in range(num_layers)
        )
        self.norm = FishS2RMSNorm(dim, eps=norm_eps)

    def forward(self, x: torch.Tensor, state: CodecStreamState | None = None) -> torch.Tensor:
        start = 0 if state is None else state.get(self, 0)
        positions = torch.arange(start, start + x.shape[-1], device=x.device)
        cos, sin = rotation_tables(
            *rope_cos_sin(positions, rope_inverse_frequencies(self.head_dim, self.rope_base, device=x.device))
        )
        h = x.transpose(1, 2)
        for layer in self.layers:
            h = layer(h, cos, sin, start, state)
        if state is not None:
            state.set(self, start + x.shape[-1])
        return self.norm(h).transpose(1, 2)
