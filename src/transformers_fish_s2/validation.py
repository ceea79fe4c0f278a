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
