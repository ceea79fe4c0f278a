"""Seed-TTS-eval test lists: one utterance per line, ``name|prompt_text|prompt_wav|target_text``.

Some lists carry a fifth field, the ground-truth recording of the target text; it is kept but not
needed. Relative wav paths are relative to the list's folder (as in Seed-TTS-eval).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MetaEntry:
    """One test utterance: clone the voice of ``prompt_wav`` (saying ``prompt_text``) to say ``target_text``."""

    name: str
    prompt_text: str
    prompt_wav: Path
    target_text: str
    target_wav: Path | None = None


def read_meta(path: str | Path) -> list[MetaEntry]:
    """Parse a Seed-TTS meta list; a malformed line is an error naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"meta list not found: {str(path)!r}")
    entries: list[MetaEntry] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split("|")
        where = f"{path}:{number}"
        if len(fields) not in (4, 5):
            raise ValueError(
                f"{where}: expected 'name|prompt_text|prompt_wav|target_text' (4 or 5 '|'-separated fields), "
                f"got {len(fields)}"
            )
        name, prompt_text, prompt_wav, target_text = (field.strip() for field in fields[:4])
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{where}: utterance name {name!r} must be non-empty and usable as a file name")
        if name in seen:
            raise ValueError(f"{where}: utterance name {name!r} repeats line {seen[name]}")
        if not target_text:
            raise ValueError(f"{where}: target_text is empty")
        if not prompt_wav:
            raise ValueError(f"{where}: prompt_wav is empty (voice cloning needs a prompt recording)")
        seen[name] = number
        target_wav = path.parent / fields[4].strip() if len(fields) == 5 and fields[4].strip() else None
        entries.append(MetaEntry(name, prompt_text, path.parent / prompt_wav, target_text, target_wav))
    if not entries:
        raise ValueError(f"meta list {str(path)!r} has no utterances")
    return entries
