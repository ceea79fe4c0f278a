"""Reading the authors' ``codec.pth`` (SPEC §1.7) into a :class:`FishS2CodecModel`.

The file is a flat ``torch.save``d state dict of their ``DAC`` module. Convolutions there are weight-
normed under two spellings (``…parametrizations.weight.original0/1`` from torch's parametrization,
``…weight_g/weight_v`` from the legacy hook used inside the quantizers); we fold each pair into the
plain ``…weight`` our modules hold. Stale ``freqs_cis``/``causal_mask`` buffers are dropped. Anything
else that does not match the module tree exactly is an error naming the keys (the reference loads
with ``strict=False`` and would silently keep random weights).
"""

from __future__ import annotations

import os
import pickle
import re

import torch
from torch import nn

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
        raise ValueError(
            f"Could not read the codec checkpoint {os.fspath(path)!r} with torch.load(weights_only=True, mmap=True): "
            f"{error}\nIt must be a state dict of tensors saved by torch.save in the default (zip) format, as the "
            "official codec.pth is; other pickled objects are refused for safety."
        ) from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{os.fspath(path)!r} does not contain a flat state dict of tensors")
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
                    raise ValueError(
                        f"codec checkpoint: {key} has no matching {g_suffix} (weight-norm magnitude)"
                    )
                break
            if key.endswith(g_suffix):
                prefix = key[: -len(g_suffix)]
                direction = state_dict.get(prefix + v_suffix)
                if direction is None:
                    raise ValueError(
                        f"codec checkpoint: {key} has no matching {v_suffix} (weight-norm direction)"
                    )
                _put(folded, prefix + ".weight", _fold(value, direction))
                break
        else:
            _put(folded, key, value)
    return folded


def load_codec_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None = None
) -> None:
    """Fold, filter and check ``state_dict`` against ``model``, then load it (``assign=True``: no copy).

    Raises ``ValueError`` naming every missing, unexpected and wrongly-shaped key.
    """
    state_dict = fold_weight_norm(
        {key: value for key, value in state_dict.items() if not key.endswith(STALE_BUFFER_SUFFIXES)}
    )
    if model.config.decoder_only:
        encoder_only = re.compile("|".join(ENCODER_ONLY_KEY_PATTERNS))
        state_dict = {key: value for key, value in state_dict.items() if not encoder_only.search(key)}
    expected = model.state_dict()
    problems = []
    if missing := sorted(expected.keys() - state_dict.keys()):
        problems.append(f"missing {len(missing)}: {_preview(missing)}")
    if unexpected := sorted(state_dict.keys() - expected.keys()):
        problems.append(f"unexpected {len(unexpected)}: {_preview(unexpected)}")
    if mismatched := [
        f"{key} {tuple(state_dict[key].shape)} (model expects {tuple(expected[key].shape)})"
        for key in sorted(expected.keys() & state_dict.keys())
        if state_dict[key].shape != expected[key].shape
    ]:
        problems.append(f"wrong shape {len(mismatched)}: {_preview(mismatched)}")
    if problems:
        raise ValueError(
            "The codec checkpoint does not match the codec built from its config ("
            + "; ".join(problems)
            + "). Check that codec_config.yaml/codec_config.json (or codec_config=) describes this checkpoint."
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
        raise ValueError(f"codec checkpoint: {key} is given twice (plain and weight-normed)")
    target[key] = value


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … (+{len(keys) - limit} more)" if len(keys) > limit else "")
