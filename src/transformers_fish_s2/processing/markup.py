"""The text markup S2 understands: speaker turns, inline [tags], reserved tokens, chunking.

To the model all of this is plain text (``<|speaker:N|>`` is ordinary BPE). The processor
still has to understand it, for three reasons:

* long dialogue is generated chunk by chunk, and the chunks must be cut exactly where the authors'
  ``generate_long`` cuts them (docs/reference-behaviour.md) or the prompts differ from the reference;
* a reserved token such as ``<|im_end|>`` in user text would be tokenised as the real control token
  and could forge prompt structure, so it is rejected unless the caller opts in;
* users want to see which speakers and inline instructions (``[whisper]``) a text uses.

Reference behaviour reproduced on purpose (quirks included):

* a text without any speaker tag is one chunk, whatever its length;
* otherwise the text is cut before every ``<|speaker:N|>``; each turn is the tag plus the text up to
  the next tag, with trailing whitespace removed; **text before the first tag is dropped**;
* turns are grouped greedily into chunks of at most ``max_turns`` turns (the reference calls this
  ``max_speakers`` but counts turns) and at most ``chunk_length`` UTF-8 bytes, counting the turns'
  bytes only (not the ``\\n`` that joins them); a turn longer than the limit forms its own chunk;
* speaker ids are ``\\d+`` in the Python sense, so any Unicode decimal digits are accepted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

SPEAKER_TAG = re.compile(r"<\|speaker:(\d+)\|>")
_SPEAKER_TAG_START = "<|speaker:"
INLINE_TAG = re.compile(r"\[([^\[\]]+)\]")

DEFAULT_CHUNK_LENGTH = 300  # UTF-8 bytes; the authors' CLI default (--chunk-length)
DEFAULT_MAX_TURNS = 5  # generate_long's max_speakers


@dataclass(frozen=True)
class SpeakerTurn:
    """One speaker turn: ``text`` starts with the ``<|speaker:N|>`` tag, exactly as sent to the model."""

    speaker: int
    text: str


@dataclass(frozen=True)
class Markup:
    """What a text contains, as the reference reads it."""

    turns: tuple[SpeakerTurn, ...]
    tags: tuple[str, ...]
    ignored_prefix: str

    @property
    def speakers(self) -> list[int]:
        """Speaker ids in order of first appearance."""
        return list(dict.fromkeys(turn.speaker for turn in self.turns))


class ReservedTokens:
    """Finds reserved (added) tokens such as ``<|im_end|>`` or ``<|semantic:12|>`` inside a string.

    Built from the tokenizer's added vocabulary, so it matches exactly what the tokenizer would turn
    into a control token instead of text.
    """

    def __init__(self, tokens: Iterable[str]):
        self.tokens = frozenset(t for t in tokens if t)
        alternatives = sorted(self.tokens, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def find(self, text: str) -> str | None:
        """The first reserved token in ``text``, or None."""
        if self._pattern is None:
            return None
        match = self._pattern.search(text)
        return match.group(0) if match else None


def speaker_tag(speaker: int) -> str:
    """The ``<|speaker:N|>`` tag that starts a turn of speaker ``N``."""
    return f"{_SPEAKER_TAG_START}{speaker}|>"


def is_blank(text: str) -> bool:
    """True when ``text`` has nothing to speak: only whitespace and invisible format characters (zero-width
    space/joiners, word joiner, BOM, soft hyphen: Unicode category Cf), which ``str.strip`` keeps."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def validate_text(
    text: object,
    *,
    name: str = "text",
    reserved: ReservedTokens | None = None,
    allow_control_tokens: bool = False,
) -> str:
    """Check a user-supplied text and return it; raise a ValueError/TypeError saying what is wrong.

    Rejects non-strings, text that is not encodable as UTF-8 (lone surrogates), empty or
    whitespace-only text (speaker tags and zero-width characters alone count as empty), speaker tags whose id is not a non-negative integer, and (unless
    ``allow_control_tokens``) any reserved token. ``name`` names the argument in the message.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} is not valid Unicode text: character {error.start} is a lone surrogate "
            f"({text[error.start]!r}) that cannot be encoded as UTF-8"
        ) from None
    if is_blank(text):
        raise ValueError(f"{name} is empty or only whitespace; there is nothing to speak")
    start = text.find(_SPEAKER_TAG_START)
    while start != -1:
        if not SPEAKER_TAG.match(text, start):
            snippet = text[start : start + 24]
            raise ValueError(
                f"{name} has a malformed speaker tag at character {start} ({snippet!r}); "
                "expected <|speaker:N|> with N a non-negative integer"
            )
        start = text.find(_SPEAKER_TAG_START, start + 1)
    if is_blank(SPEAKER_TAG.sub("", text)):
        raise ValueError(f"{name} has only speaker tags and whitespace; there is nothing to speak")
    if reserved is not None and not allow_control_tokens:
        token = reserved.find(text)
        if token is not None:
            raise ValueError(
                f"{name} contains the reserved token {token!r}, which would be read as a control token "
                "and change the prompt structure; remove it, or pass allow_control_tokens=True if this "
                "is intended"
            )
    return text


def parse_markup(text: str) -> Markup:
    """Split ``text`` into speaker turns (reference rules, see module docstring) and list its [tags]."""
    matches = list(SPEAKER_TAG.finditer(text))
    turns = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        turns.append(SpeakerTurn(speaker=int(match.group(1)), text=text[match.start() : end].strip()))
    ignored_prefix = text[: matches[0].start()] if matches else ""
    tags = tuple(tag.strip() for tag in INLINE_TAG.findall(text) if tag.strip())
    return Markup(turns=tuple(turns), tags=tags, ignored_prefix=ignored_prefix)


def group_turns(
    turns: Iterable[str], *, chunk_length: int = DEFAULT_CHUNK_LENGTH, max_turns: int = DEFAULT_MAX_TURNS
) -> list[str]:
    """Greedily pack turns into ``\\n``-joined chunks of ≤ ``max_turns`` turns and ≤ ``chunk_length`` bytes."""
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be a positive number of UTF-8 bytes, got {chunk_length}")
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1, got {max_turns}")
    chunks: list[str] = []
    current: list[str] = []
    current_bytes = 0
    for turn in turns:
        turn_bytes = len(turn.encode("utf-8"))
        if current and (len(current) >= max_turns or current_bytes + turn_bytes > chunk_length):
            chunks.append("\n".join(current))
            current, current_bytes = [], 0
        current.append(turn)
        current_bytes += turn_bytes
    if current:
        chunks.append("\n".join(current))
    return chunks


def chunk_text(
    text: str, *, chunk_length: int = DEFAULT_CHUNK_LENGTH, max_turns: int = DEFAULT_MAX_TURNS
) -> list[str]:
    """The user messages the reference generates ``text`` in, one per chunk (docs/reference-behaviour.md)."""
    markup = parse_markup(text)
    if not markup.turns:
        return [text]
    return group_turns((turn.text for turn in markup.turns), chunk_length=chunk_length, max_turns=max_turns)


def user_message_text(text: str) -> str:
    """The user message for ``text`` as one chunk: turns re-joined with ``\\n`` (no grouping limits).

    Identical to the reference's chunk when the text fits in one chunk; idempotent, so a chunk from
    :func:`chunk_text` maps to itself.
    """
    markup = parse_markup(text)
    if not markup.turns:
        return text
    return "\n".join(turn.text for turn in markup.turns)
