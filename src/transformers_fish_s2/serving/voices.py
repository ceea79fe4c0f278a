"""Saved voices: a reference clip encoded once, kept on disk as codes + transcript, used by name.

Encoding a clip with the codec costs far more than a request's prompt, and most clients use the same few
voices, so the server (``POST /v1/voices``) and ``fish-s2 voices add`` store the codes in a folder, one
``<name>.safetensors`` codes file each (the format ``fish-s2 encode`` writes: codes + transcript in the
metadata). Files are written atomically, so a crash never leaves half a voice, and names are checked
against a strict pattern, so a name can never point outside the folder.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cli import CLIError, read_codes_file, write_codes_file

VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Letters, digits, ``_`` and ``-``, starting with a letter or digit, at most 64 characters: no dots, slashes
or spaces, so a name is always one plain file name."""

DEFAULT_VOICE = "default"
"""The built-in voice (no reference); reserved, never a saved voice's name."""

SUFFIX = ".safetensors"


class VoiceError(ValueError):
    """A voice request that cannot be honoured; ``status`` is the HTTP status a server answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Voice:
    name: str
    text: str
    codes: torch.LongTensor  # [num_codebooks, frames]

    def reference(self) -> dict:
        """The voice as the processor's reference dict."""
        return {"text": self.text, "codes": self.codes}


def default_voices_dir() -> Path:
    """``$FISH_S2_VOICES_DIR``, else ``$XDG_DATA_HOME/fish-s2/voices`` (``~/.local/share/fish-s2/voices``)."""
    if os.environ.get("FISH_S2_VOICES_DIR"):
        return Path(os.environ["FISH_S2_VOICES_DIR"])
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "fish-s2" / "voices"


def check_voice_name(name: object) -> str:
    """``name`` if it can name a saved voice, else a :class:`VoiceError` saying what is allowed."""
    if not isinstance(name, str) or not VOICE_NAME.fullmatch(name):
        raise VoiceError(
            f"voice name {name!r} is invalid: use 1-64 letters, digits, '_' or '-', starting with a letter or "
            "digit"
        )
    if name == DEFAULT_VOICE:
        raise VoiceError(
            f"{DEFAULT_VOICE!r} is the built-in voice (no reference) and cannot be saved or removed"
        )
    return name


class VoiceStore:
    """The voices folder. Safe for the threads of one server; ``fish-s2 voices`` may change the folder
    while a server runs (each lookup reads the file)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        return self.folder / f"{check_voice_name(name)}{SUFFIX}"

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob(f"*{SUFFIX}") if VOICE_NAME.fullmatch(path.stem))

    def get(self, name: str) -> Voice:
        path = self._path(name)
        if not path.is_file():
            raise VoiceError(f"voice {name!r} not found; saved voices: {self.names() or 'none'}", status=404)
        try:
            codes, text = read_codes_file(path)
        except CLIError as error:
            raise VoiceError(f"voice {name!r} cannot be read: {error}", status=500) from None
        if not text:
            raise VoiceError(f"voice {name!r} has no transcript stored", status=500)
        return Voice(name, text, codes)

    def check_name_available(self, name: str, *, overwrite: bool = False) -> None:
        """Refuse an invalid name, or an existing one (409) unless ``overwrite``: checked before the costly
        encoding of the clip, and again when saving."""
        if self._path(name).exists() and not overwrite:
            raise VoiceError(f"voice {name!r} already exists; pass overwrite=true to replace it", status=409)

    def add(
        self, name: str, codes: torch.Tensor, text: str, *, sampling_rate: int, overwrite: bool = False
    ) -> Voice:
        """Save a voice (codes of a codec at ``sampling_rate``); an existing name is refused (409) unless
        ``overwrite``."""
        path = self._path(name)
        if not isinstance(text, str) or not text.strip():
            raise VoiceError("the voice's transcript (text) is empty; give what is said in the clip")
        with self._lock:
            self.check_name_available(name, overwrite=overwrite)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_codes_file(path, codes, sampling_rate=sampling_rate, text=text.strip())
        return Voice(name, text.strip(), codes)

    def remove(self, name: str) -> None:
        path = self._path(name)
        with self._lock:
            if not path.is_file():
                raise VoiceError(f"voice {name!r} not found", status=404)
            path.unlink()
