"""Text normalisation for error rates, following the Seed-TTS-eval conventions.

Seed-TTS-eval (the benchmark behind the S2 report's 0.99 % en / 0.54 % zh) scores a transcript by
1. deleting punctuation except the ASCII apostrophe (``string.punctuation`` plus the Chinese
   punctuation list of the ``zhon`` package),
2. for English: lower-casing and counting words; for Chinese: counting characters (every non-space
   character is a token, Latin letters included, case kept).

We do not depend on ``zhon``: "punctuation" here is every character whose Unicode category is
punctuation (``P*``), plus ``string.punctuation`` and its full-width forms (``＄＋＜＝＞＾｀｜～`` are
symbols, not punctuation, to Unicode). That covers the ``zhon`` list; it additionally strips rare
marks ``zhon`` keeps in some of its versions (e.g. the middle dot ``·``), so a transcript containing
them can score marginally differently from the authors' scripts.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Literal

Unit = Literal["word", "char"]

#: Languages scored per character (no spaces between words); everything else is scored per word.
CHARACTER_LANGUAGES = frozenset({"zh", "yue", "ja"})

_KEPT = "'"


def _is_punctuation(char: str) -> bool:
    if char == _KEPT:
        return False
    if unicodedata.category(char).startswith("P"):
        return True
    return unicodedata.normalize("NFKC", char) in string.punctuation


def unit_for_language(lang: str, unit: Unit | None = None) -> Unit:
    """The token unit used for ``lang`` (``"char"`` for Chinese, Cantonese, Japanese), unless forced."""
    if unit is not None:
        if unit not in ("word", "char"):
            raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
        return unit
    if not isinstance(lang, str) or not lang:
        raise ValueError(f"lang must be a non-empty language code such as 'en' or 'zh', got {lang!r}")
    return "char" if lang.lower().split("-")[0] in CHARACTER_LANGUAGES else "word"


def remove_punctuation(text: str) -> str:
    """Delete punctuation (Seed-TTS set, see module doc), keeping the ASCII apostrophe."""
    return "".join(char for char in text if not _is_punctuation(char))


def normalize_for_error_rate(text: str, lang: str = "en", unit: Unit | None = None) -> list[str]:
    """The tokens Seed-TTS-eval compares: punctuation-free, lower-cased words or raw characters."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = remove_punctuation(text)
    if unit_for_language(lang, unit) == "char":
        return [char for char in text if not char.isspace()]
    return text.lower().split()
