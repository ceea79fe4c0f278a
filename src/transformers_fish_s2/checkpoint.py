"""Strict checkpoint loading, shared by the model and the codec.

Every weight file is checked before it is trusted: an unreadable file is named, and a state dict that does not
fit the module tree built from the config is refused with one message that lists the missing keys, the
unexpected keys (with the file they came from, when known) and the misshapen keys with both shapes. The
authors' loaders are non-strict and would keep random weights instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

LISTED_KEYS = 20
"""Keys shown per kind of problem; the rest are counted."""


class FishS2CheckpointError(ValueError, RuntimeError):
    """A checkpoint that does not match its model: unreadable files, missing, unexpected or misshapen tensors.

    A ``ValueError`` (a file that does not fit); also a ``RuntimeError``, which it was in release 0.1.0.
    """


Shape = tuple[int, ...] | list[int] | torch.Size


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[tuple[str, Shape, Shape]]]:
    """``(missing, unexpected, mismatched)`` keys of ``found`` against ``expected``; mismatched entries are
    ``(key, shape found, shape expected)``."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    mismatched = [
        (key, tuple(found[key].shape), tuple(expected[key].shape))
        for key in sorted(expected.keys() & found.keys())
        if found[key].shape != expected[key].shape
    ]
    return missing, unexpected, mismatched


def raise_on_mismatch(
    model_name: str,
    checkpoint: str | os.PathLike,
    *,
    missing: Iterable[str] = (),
    unexpected: Iterable[str] = (),
    mismatched: Iterable[tuple[str, Shape, Shape]] = (),
    key_to_file: Mapping[str, str] | None = None,
    hint: str,
) -> None:
    """Raise :class:`FishS2CheckpointError` listing every problem, or return when there is none.

    ``mismatched`` holds ``(key, shape in the checkpoint, shape the model expects)``; ``hint`` says which
    config file should describe the checkpoint.
    """
    key_to_file = key_to_file or {}

    def where(key: str) -> str:
        return f" (in {key_to_file[key]})" if key in key_to_file else ""

    def listing(title: str, keys: list[str], describe: Callable[[str], str]) -> str:
        shown = [f"    {describe(key)}" for key in keys[:LISTED_KEYS]]
        if len(keys) > LISTED_KEYS:
            shown.append(f"    ... and {len(keys) - LISTED_KEYS} more")
        return f"  {len(keys)} {title}:\n" + "\n".join(shown)

    problems = []
    if missing := sorted(missing):
        problems.append(listing("tensor(s) missing from the checkpoint", missing, str))
    if unexpected := sorted(unexpected):
        problems.append(
            listing("unexpected tensor(s) the model has no place for", unexpected, lambda k: k + where(k))
        )
    shapes = {key: (list(found), list(wanted)) for key, found, wanted in sorted(mismatched)}
    if shapes:
        problems.append(
            listing(
                "tensor(s) with the wrong shape",
                list(shapes),
                lambda k: f"{k}{where(k)}: checkpoint {shapes[k][0]}, model expects {shapes[k][1]}",
            )
        )
    if problems:
        raise FishS2CheckpointError(
            f"Checkpoint {os.fspath(checkpoint)} does not match {model_name} ({hint}):\n"
            + "\n".join(problems)
        )


def check_safetensors_files(directory: Path) -> dict[str, str]:
    """Open every safetensors file of a local checkpoint before loading, so a truncated or missing shard is
    reported by name. Returns ``{tensor key: file name}`` for :func:`raise_on_mismatch`."""
    index_path = directory / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise FishS2CheckpointError(f"{index_path} is not a valid safetensors index ({err!r})") from err
        files = sorted(set(weight_map.values()))
        for file in files:
            if not (directory / file).is_file():
                raise FishS2CheckpointError(
                    f"{directory / file} is listed in {index_path.name} but does not exist"
                )
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return {}
    key_to_file = {}
    for file in files:
        try:
            with safe_open(directory / file, framework="pt") as handle:
                key_to_file.update(dict.fromkeys(handle.keys(), file))
        except SafetensorError as err:
            raise FishS2CheckpointError(
                f"{directory / file} is not a readable safetensors file ({err}); it is probably truncated or "
                "corrupted — download it again"
            ) from err
    return key_to_file


def local_checkpoint_dir(name_or_path: str | os.PathLike, subfolder: str = "") -> Path | None:
    """The folder of a local checkpoint (``None`` for a Hub id)."""
    path = Path(name_or_path) / subfolder
    return path if path.is_dir() else None
