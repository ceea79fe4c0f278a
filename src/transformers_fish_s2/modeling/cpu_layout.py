"""Where the fp32 weights live while a CPU decodes (docs/speed.md, "On the CPU").

Decoding multiplies one row per layer by every weight, so a frame is bound by reading the weights (~550 MB a
frame on the ``small`` benchmark config, far more than any cache). Two things make those reads faster, and
neither changes a value, a key or a parameter object:

* **Column-major wide weights.** MKL's one-row fp32 product reads a ``[out, in]`` weight with ``out >= in``
  faster stored as its transpose (``W.t().contiguous().t()``); narrower ones (the down projections) read faster
  row-major and stay so.
* **Huge pages.** The weights are copied into a few large buffers aligned to 2 MiB and advised as transparent
  huge pages (Linux, ``madvise`` mode), so streaming them costs ~500 times fewer TLB misses than 4 KiB pages
  (~4% faster frames, measured). Elsewhere the advice is skipped; the buffers are ordinary memory.

Weights are moved one buffer (at most 64 MiB) at a time, so the layout adds no more memory than that. Views into
the shared buffers are returned as ordinary tensors by ``state_dict`` (the model's state-dict hook), and
:func:`restore_row_major` gives every weight its own row-major tensor again (``train()``, a cast, the off switch).
"""

from __future__ import annotations

import ctypes
import sys

import torch
from torch import nn

_HUGE_PAGE = 2 << 20
_PAGE = 4096
_BUFFER_BYTES = 64 << 20
_MADV_HUGEPAGE = 14  # Linux


def decode_weights(model: nn.Module) -> list[tuple[nn.Parameter, bool]]:
    """The 2-D weights of the model's plain ``nn.Linear`` and ``nn.Embedding`` modules, each once (the tied output
    head is the embedding table), with whether a linear multiplies by it. Quantized or LoRA linears are other
    types and are never touched."""
    weights: dict[int, tuple[nn.Parameter, bool]] = {}
    for module in model.modules():
        kind = type(module)
        weight = module.weight if kind in (nn.Linear, nn.Embedding) else None
        if type(weight) is nn.Parameter and weight.dim() == 2:
            linear = kind is nn.Linear or weights.get(id(weight), (weight, False))[1]
            weights[id(weight)] = weight, linear
    return list(weights.values())


def is_column_major(weight: torch.Tensor) -> bool:
    return not weight.is_contiguous() and weight.t().is_contiguous()


def is_shared(weight: torch.Tensor) -> bool:
    """Whether the tensor is a view into a larger storage (e.g. one of the decoding buffers)."""
    return weight.untyped_storage().nbytes() > weight.numel() * weight.element_size()


def lay_out_for_cpu_decoding(model: nn.Module) -> None:
    """Give the model's fp32 CPU weights the decoding layout above; a no-op when they already have it."""
    weights, strides = [], {}
    for weight, linear in decode_weights(model):
        if weight.dtype == torch.float32 and weight.device.type == "cpu":
            column_major = linear and weight.shape[0] >= weight.shape[1]
            weights.append(weight)
            strides[id(weight)] = (1, weight.shape[0]) if column_major else (weight.shape[1], 1)
    if all(w.stride() == strides[id(w)] and is_shared(w) for w in weights):
        return
    group, size = [], 0
    for weight in weights:
        nbytes = _round_up(weight.numel() * weight.element_size(), _PAGE)
        if group and size + nbytes > _BUFFER_BYTES:
            _move_into_buffer(group, size, strides)
            group, size = [], 0
        group.append(weight)
        size += nbytes
    if group:
        _move_into_buffer(group, size, strides)


def restore_row_major(model: nn.Module) -> None:
    """Every weight in its own row-major tensor again (any dtype: also a model cast after its layout was made)."""
    for weight, _ in decode_weights(model):
        if is_column_major(weight) or is_shared(weight):
            weight.data = weight.data.clone(memory_format=torch.contiguous_format)


def _move_into_buffer(weights: list[nn.Parameter], nbytes: int, strides: dict[int, tuple[int, int]]) -> None:
    buffer = _huge_page_buffer(nbytes)
    offset = 0
    for weight in weights:
        size = weight.numel() * weight.element_size()
        view = buffer[offset : offset + size].view(weight.dtype).as_strided(weight.shape, strides[id(weight)])
        with torch.no_grad():
            view.copy_(weight)
        weight.data = view
        offset += _round_up(size, _PAGE)


def _huge_page_buffer(nbytes: int) -> torch.Tensor:
    """``nbytes`` of uint8 starting on a 2 MiB boundary, advised as transparent huge pages before first use."""
    raw = torch.empty(nbytes + _HUGE_PAGE, dtype=torch.uint8)
    start = -raw.data_ptr() % _HUGE_PAGE
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(raw.data_ptr() + start), ctypes.c_size_t(nbytes), _MADV_HUGEPAGE)
        # a refusal (THP off, an old kernel) only loses the speed-up
    return raw[start : start + nbytes]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
