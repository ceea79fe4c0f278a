"""Writing output files so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` to write to; it replaces ``path`` when the block succeeds
    and is deleted when it raises, so ``path`` is either the complete new file or untouched.

    The temporary file lives in the same folder (``os.replace`` is atomic within one file system) and is
    created by the writer, so it gets the usual permissions. A missing folder is reported up front.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


PROBE_BYTES = 4096
"""Bytes :func:`check_writable` writes: creating an empty file can still succeed on a full disk."""


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, not after minutes of generation, when ``path`` cannot be written: its folder is missing,
    read-only, not writable or full. Writes and deletes a small probe file beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe") as probe:
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
    except OSError as error:
        raise OSError(f"cannot write {str(path)!r}: {error.strerror or error}") from None
