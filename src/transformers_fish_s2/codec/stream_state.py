"""State carried between the chunks of a streaming decode.

Every layer of the codec's decode path is causal, so decoding a chunk of frames only needs a bounded
left context from the chunks before it: the last inputs each convolution's kernel reaches back into,
and the keys/values of the last ``window - 1`` positions of each window transformer (plus the next
RoPE position). :class:`CodecStreamState` holds exactly that, keyed by layer; a layer that receives a
state uses and updates its own entry instead of zero-padding, which makes chunked decoding equal to a
full decode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CodecStreamState:
    """Per-layer left context of a streaming decode (created empty = start of a stream)."""

    def __init__(self) -> None:
        self._entries: dict[nn.Module, Any] = {}

    def prepend_context(self, layer: nn.Module, x: torch.Tensor, size: int) -> torch.Tensor:
        """Return ``x [..., T]`` with the layer's previous ``size`` inputs in front, and remember the new last ones.

        At the start of a stream the context is zeros, which is what the full (non-streaming) layer pads with.
        """
        if size == 0:
            return x
        context = self._entries.get(layer)
        if context is None:
            context = x.new_zeros(*x.shape[:-1], size)
        x = torch.cat([context, x], dim=-1)
        # clone: a view would keep the whole chunk alive until the next call
        self._entries[layer] = x[..., x.shape[-1] - size :].clone()
        return x

    def get(self, layer: nn.Module, default: Any = None) -> Any:
        return self._entries.get(layer, default)

    def set(self, layer: nn.Module, value: Any) -> None:
        self._entries[layer] = value
