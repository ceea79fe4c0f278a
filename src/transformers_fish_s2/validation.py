"""Small input checks that several parts of the package need, each written once."""

from __future__ import annotations

import torch

HUB_KWARGS: tuple[str, ...] = (
    "cache_dir",
    "force_download",
    "local_files_only",
    "token",
    "revision",
    "proxies",
)
"""Keyword arguments that only say where and how to fetch files from the Hub (passed on to every download)."""

DTYPE_NAMES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}
"""Compute dtype names accepted wherever a dtype may be given as a string (Python API and CLI)."""


def parse_dtype(value: torch.dtype | str, name: str = "dtype") -> torch.dtype:
    """A floating compute dtype from a ``torch.dtype`` or one of :data:`DTYPE_NAMES`."""
    if isinstance(value, torch.dtype) and value in DTYPE_NAMES.values():
        return value
    if isinstance(value, str) and value in DTYPE_NAMES:
        return DTYPE_NAMES[value]
    raise ValueError(f"{name} must be one of {', '.join(DTYPE_NAMES)} (or the torch dtype), got {value!r}")


def is_integer_tensor(tensor: torch.Tensor) -> bool:
    """True for integer dtypes; booleans, floats and complex numbers are not token ids or codes."""
    dtype = tensor.dtype
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def audio_codes_or_zeros(
    audio_codes: torch.Tensor | None, input_ids: torch.Tensor, num_codebooks: int
) -> torch.Tensor:
    """``audio_codes`` checked to be ``[batch, num_codebooks, seq_len]`` like ``input_ids [batch, seq_len]``, or
    all-zero codes (a text-only prompt) when it is ``None``."""
    batch, length = input_ids.shape
    if audio_codes is None:
        return input_ids.new_zeros(batch, num_codebooks, length)
    if tuple(audio_codes.shape) != (batch, num_codebooks, length):
        raise ValueError(
            f"audio_codes must be [batch, num_codebooks, seq_len] = [{batch}, {num_codebooks}, {length}] to match "
            f"input_ids {tuple(input_ids.shape)}, got {tuple(audio_codes.shape)}"
        )
    return audio_codes


REPR_LIMIT = 80
"""Characters of a value shown in an error message."""


def short_repr(value: object, limit: int = REPR_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about untrusted values.

    Never formats more than it shows: a YAML alias bomb is a few KB on disk but its value prints as gigabytes.
    """
    text = _bounded_repr(value, limit + 1, depth=0)
    return text if len(text) <= limit else text[:limit] + "..."


def _bounded_repr(value: object, budget: int, depth: int) -> str:
    """``repr(value)``, stopping soon after ``budget`` characters or 8 levels of nesting."""
    if isinstance(value, (str, bytes)):
        return repr(value[:budget])
    if not isinstance(value, (list, tuple, dict)):
        text = repr(value)
        return text[: budget + 1]
    if depth >= 8:
        return "..."
    opening, closing = {dict: "{}", tuple: "()"}.get(type(value), "[]")
    pieces = value.items() if isinstance(value, dict) else zip([None] * len(value), value)
    text = opening
    for key, item in pieces:
        if len(text) > budget:
            return text
        if len(text) > 1:
            text += ", "
        if isinstance(value, dict):
            text += _bounded_repr(key, budget, depth + 1) + ": "
        text += _bounded_repr(item, budget - len(text), depth + 1)
    return text + closing


def dtype_itemsize(dtype: object, fallback: object = None) -> int:
    """Bytes per weight of the dtype a loader will build in: ``dtype`` (a torch dtype or a name from
    :data:`DTYPE_NAMES`), else ``fallback`` (the config's dtype, what ``"auto"`` loads), else 4 (float32)."""
    for candidate in (dtype, fallback):
        if isinstance(candidate, torch.dtype):
            return candidate.itemsize
        if isinstance(candidate, str) and candidate in DTYPE_NAMES:
            return DTYPE_NAMES[candidate].itemsize
    return 4
