"""Strict checkpoint loading, shared by the model and the codec.

Every weight file is checked before it is trusted: an unreadable file is named, and a state dict that does not
fit the module tree built from the config is refused with one message that lists the missing keys, the
unexpected keys (with the file they came from, when known) and the misshapen keys with both shapes. The
authors' loaders are non-strict and would keep random weights instead.
"""

from __future__ import annotations

import json
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

LISTED_KEYS = 20
"""Keys shown per kind of problem; the rest are counted."""

LISTED_INLINE = 5
"""Keys shown in a one-line message (bad dtypes, NaN/inf values); the rest are counted."""

MAX_METADATA_FILE_BYTES = 64 * 2**20
"""Largest ``config.json`` / ``tokenizer.json`` / codec config read (64 MiB; s2-pro's tokenizer.json is about
11 MB, its configs 2 KB). A bigger file is corrupt or hostile and would only cost memory and parse time."""

FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "FLOAT16", "BFLOAT16", "FLOAT32", "FLOAT64"})
"""Dtypes a weight may have (safetensors and torch spellings); integer or boolean weights come from a corrupt or
foreign file."""

FINITE_CHECK_ELEMENTS = 2**24
"""Elements checked for NaN/inf at a time, so the check never allocates a mask as large as a whole weight."""


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


def require_file(path: str | os.PathLike, max_bytes: int = MAX_METADATA_FILE_BYTES) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes``; otherwise :class:`FishS2CheckpointError` saying
    what it is instead. A missing config must never mean "build the defaults" (the full s2-pro), and a FIFO or
    ``/dev/zero`` in its place must not hang or exhaust the reader."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FishS2CheckpointError(
            f"{path} is missing: the checkpoint is incomplete; download it again"
        ) from None
    except OSError as err:
        raise FishS2CheckpointError(f"{path} cannot be read: {err}") from err
    if stat.S_ISDIR(info.st_mode):
        raise FishS2CheckpointError(f"{path} is a directory, not a file: the checkpoint is broken")
    if not stat.S_ISREG(info.st_mode):
        raise FishS2CheckpointError(
            f"{path} is not a regular file (a FIFO, socket or device): the checkpoint is broken"
        )
    if info.st_size > max_bytes:
        raise FishS2CheckpointError(
            f"{path} is {info.st_size} bytes; files of this kind are at most {max_bytes} bytes "
            "(MAX_METADATA_FILE_BYTES): it is corrupt"
        )
    if not os.access(path, os.R_OK):
        raise FishS2CheckpointError(f"{path} is not readable (permission denied)")
    return path


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], checkpoint: str | os.PathLike) -> None:
    """Refuse NaN or infinite values in floating tensors (they give NaN audio or all-zero codes later, silently).

    Checked in slices of :data:`FINITE_CHECK_ELEMENTS`; meta and non-floating (quantized) tensors are skipped.
    """
    bad = []
    for key, tensor in tensors:
        if not tensor.is_floating_point() or tensor.is_meta:
            continue
        flat = tensor.detach().reshape(-1)
        if not all(bool(part.isfinite().all()) for part in flat.split(FINITE_CHECK_ELEMENTS)):
            bad.append(key)
    if bad:
        shown = ", ".join(bad[:LISTED_INLINE]) + (
            f" and {len(bad) - LISTED_INLINE} more" if len(bad) > LISTED_INLINE else ""
        )
        raise FishS2CheckpointError(
            f"Checkpoint {os.fspath(checkpoint)} has NaN or infinite values in {len(bad)} tensor(s): {shown}. "
            "The file is corrupt; download it again"
        )


def check_weight_dtypes(dtypes: Mapping[str, str], checkpoint: str | os.PathLike) -> None:
    """Refuse weights whose stored dtype is not floating (``{key: dtype name}``, e.g. ``"I64"``, ``"BOOL"``);
    loading would cast them silently into meaningless weights."""
    bad = sorted(
        key for key, dtype in dtypes.items() if dtype.upper().removeprefix("TORCH.") not in FLOAT_DTYPES
    )
    if bad:
        listed = ", ".join(f"{key} ({dtypes[key]})" for key in bad[:LISTED_INLINE])
        more = f" and {len(bad) - LISTED_INLINE} more" if len(bad) > LISTED_INLINE else ""
        raise FishS2CheckpointError(
            f"Checkpoint {os.fspath(checkpoint)} stores {len(bad)} weight(s) with a non-floating dtype: "
            f"{listed}{more}. Weights are float16, bfloat16 or float32; the file is corrupt or not a Fish S2 checkpoint"
        )


def _index_files(directory: Path, index_path: Path) -> list[str]:
    """The shard names of a safetensors index, each a relative path that stays inside ``directory``."""
    try:
        weight_map = json.loads(require_file(index_path).read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise FishS2CheckpointError(
            f"{index_path} is not a valid safetensors index ({type(err).__name__})"
        ) from err
    root = directory.resolve()
    for file in files:
        if not isinstance(file, str) or not file:
            raise FishS2CheckpointError(f"{index_path}: weight_map values must be file names")
        if Path(file).is_absolute() or not (root / file).resolve().is_relative_to(root):
            raise FishS2CheckpointError(
                f"{index_path}: weight_map points outside the checkpoint folder ({file[:80]!r}); refused"
            )
        if not (directory / file).is_file():
            raise FishS2CheckpointError(
                f"{directory / file} is listed in {index_path.name} but does not exist"
            )
    return files


def check_safetensors_files(directory: Path, *, quantized: bool = False) -> dict[str, str]:
    """Open every safetensors file of a local checkpoint before loading, so a truncated or missing shard, a
    shard outside the folder or a non-floating weight (unless the checkpoint is ``quantized``: its packed weights
    are integers) is reported by name. Returns ``{tensor key: file name}`` for :func:`raise_on_mismatch`."""
    index_path = directory / "model.safetensors.index.json"
    if index_path.exists():
        files = _index_files(directory, index_path)
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return {}
    key_to_file, dtypes = {}, {}
    for file in files:
        try:
            with safe_open(directory / file, framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    key_to_file[key] = file
                    dtypes[key] = handle.get_slice(key).get_dtype()
        except SafetensorError as err:
            raise FishS2CheckpointError(
                f"{directory / file} is not a readable safetensors file ({err}); it is probably truncated or "
                "corrupted — download it again"
            ) from err
    if not quantized:
        check_weight_dtypes(dtypes, directory)
    return key_to_file


def local_checkpoint_dir(name_or_path: str | os.PathLike, subfolder: str = "") -> Path | None:
    """The folder of a local checkpoint (``None`` for a Hub id)."""
    path = Path(name_or_path) / subfolder
    return path if path.is_dir() else None


_PIPELINE_PROCESSOR_ERRORS: OrderedDict[str, str] = OrderedDict()
"""Why the processor of a checkpoint failed to load inside ``pipeline()`` (the last few, by checkpoint name)."""


def record_pipeline_processor_error(name: str, error: BaseException | None) -> None:
    """Remember (or, with ``error=None``, forget) why ``pipeline()`` could not load the processor of ``name``.

    transformers' pipeline swallows that error and carries on with the bare tokenizer, so the model would get
    prompts without audio codes and the pipeline would return codes as "audio". The model's ``generate`` reads
    this to refuse with the real cause instead.
    """
    _PIPELINE_PROCESSOR_ERRORS.pop(name, None)
    if error is not None:
        _PIPELINE_PROCESSOR_ERRORS[name] = f"{type(error).__name__}: {error}"
        while len(_PIPELINE_PROCESSOR_ERRORS) > 8:
            _PIPELINE_PROCESSOR_ERRORS.popitem(last=False)


def pipeline_processor_error(name: str) -> str | None:
    """The error recorded by :func:`record_pipeline_processor_error` for ``name``, if any."""
    return _PIPELINE_PROCESSOR_ERRORS.get(name)
