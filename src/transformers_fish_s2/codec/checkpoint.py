"""Reading the authors' ``codec.pth`` into a :class:`FishS2CodecModel`.

The file is a flat ``torch.save``d state dict of their ``DAC`` module. Convolutions there are weight-
normed under two spellings (``…parametrizations.weight.original0/1`` from torch's parametrization,
``…weight_g/weight_v`` from the legacy hook used inside the quantizers); we fold each pair into the
plain ``…weight`` our modules hold. Stale ``freqs_cis``/``causal_mask`` buffers are dropped. Anything
else that does not match the module tree exactly is refused by the package's strict check
(:func:`transformers_fish_s2.checkpoint.raise_on_mismatch`), like the model's weights.
"""

from __future__ import annotations

import os
import pickle
import re

import torch
from torch import nn

from ..checkpoint import (
    FishS2CheckpointError,
    check_finite,
    check_weight_dtypes,
    compare_state_dicts,
    raise_on_mismatch,
)

# (g, v) suffix pairs of the two weight-norm spellings.
WEIGHT_NORM_SUFFIXES = (
    (".parametrizations.weight.original0", ".parametrizations.weight.original1"),
    (".weight_g", ".weight_v"),
)
STALE_BUFFER_SUFFIXES = (".freqs_cis", ".causal_mask")
# Parameters only the encode path uses; a decoder-only codec skips them.
ENCODER_ONLY_KEY_PATTERNS = (
    r"^encoder\.",
    r"^quantizer\.downsample\.",
    r"^quantizer\.pre_module\.",
    r"\.in_proj\.",
)


def read_codec_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load ``codec.pth`` with ``torch.load(weights_only=True, mmap=True)`` and unwrap it like the reference.

    A ``{"state_dict": …}`` wrapper is unwrapped, and a training checkpoint (keys containing
    ``generator``) is reduced to its ``generator.*`` weights with the prefix removed.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError) as error:
        raise FishS2CheckpointError(
            f"Could not read the codec checkpoint {os.fspath(path)!r} with torch.load(weights_only=True, mmap=True): "
            f"{error}\nIt must be a state dict of tensors saved by torch.save in the default (zip) format, as the "
            "official codec.pth is; other pickled objects are refused for safety."
        ) from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise FishS2CheckpointError(f"{os.fspath(path)!r} does not contain a flat state dict of tensors")
    if any("generator" in key for key in data):
        data = {
            key.removeprefix("generator."): value
            for key, value in data.items()
            if key.startswith("generator.")
        }
    return dict(data)


def fold_weight_norm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every weight-norm pair (g, v) by the weight it stands for: ``w = v · g / ‖v‖``.

    The norm runs over all dims but 0 (``weight_norm(dim=0)``); the fold is computed in fp32 and cast
    back to v's dtype. Both spellings are accepted; a g without its v (or vice versa) is an error.
    """
    folded: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for g_suffix, v_suffix in WEIGHT_NORM_SUFFIXES:
            if key.endswith(v_suffix):
                if key[: -len(v_suffix)] + g_suffix not in state_dict:
                    raise FishS2CheckpointError(
                        f"codec checkpoint: {key} has no matching {g_suffix} (weight-norm magnitude)"
                    )
                break
            if key.endswith(g_suffix):
                prefix = key[: -len(g_suffix)]
                direction = state_dict.get(prefix + v_suffix)
                if direction is None:
                    raise FishS2CheckpointError(
                        f"codec checkpoint: {key} has no matching {v_suffix} (weight-norm direction)"
                    )
                _put(folded, prefix + ".weight", _fold(value, direction))
                break
        else:
            _put(folded, key, value)
    return folded


def load_codec_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    checkpoint: str | os.PathLike = "codec.pth",
) -> None:
    """Fold, filter and check ``state_dict`` against ``model``, then load it (``assign=True``: no copy).

    Raises :class:`~transformers_fish_s2.checkpoint.FishS2CheckpointError` naming every missing, unexpected
    and wrongly-shaped key, every non-floating weight and every weight with NaN/inf values (``checkpoint`` names
    the file in the message).
    """
    state_dict = {key: value for key, value in state_dict.items() if not key.endswith(STALE_BUFFER_SUFFIXES)}
    check_weight_dtypes({key: str(value.dtype) for key, value in state_dict.items()}, checkpoint)
    check_finite(state_dict.items(), checkpoint)
    state_dict = fold_weight_norm(state_dict)
    if model.config.decoder_only:
        encoder_only = re.compile("|".join(ENCODER_ONLY_KEY_PATTERNS))
        state_dict = {key: value for key, value in state_dict.items() if not encoder_only.search(key)}
    missing, unexpected, mismatched = compare_state_dicts(model.state_dict(), state_dict)
    raise_on_mismatch(
        type(model).__name__,
        checkpoint,
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        hint="does codec_config.yaml/codec_config.json (or codec_config=) describe this checkpoint?",
    )
    if dtype is not None:
        state_dict = {key: value.to(dtype) for key, value in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=True)


def _fold(magnitude: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    v = direction.float()
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
    return (v * (magnitude.float() / norm)).to(direction.dtype)


def _put(target: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    if key in target:
        raise FishS2CheckpointError(f"codec checkpoint: {key} is given twice (plain and weight-normed)")
    target[key] = value
