"""Splitting plain text into sentence chunks, so a story or a book is spoken chunk by chunk.

The reference speaks a text without speaker tags as one chunk, whatever its length; the model then stops
after ``max_new_tokens`` frames (47.5 s by default) and the rest of the text is never spoken. Long-form
generation splits it instead:

* paragraphs (blank lines) always end a chunk;
* sentences end at ``. ! ? …`` followed by a space (closing quotes and brackets stay with their sentence),
  and at the CJK and other full stops ``。 ！ ？ ； ．`` (no space needed), Arabic ``؟ ۔`` and Devanagari ``। ॥``;
* sentences are packed greedily into chunks of at most ``chunk_length`` UTF-8 bytes (the unit the
  speaker-turn chunking uses; a CJK character is 3 bytes, so 300 bytes is about 100 characters);
* a sentence longer than that is cut at clause punctuation (``, ; : ， 、 ； ：``), then at spaces, then
  (CJK text without any) every ``chunk_length`` bytes at a character boundary.

Abbreviations such as "Dr. Smith" end a sentence here: harmless, the next chunk is conditioned on it.
"""

from __future__ import annotations

import re

_CLOSERS = re.escape("\"'”’»)]}」』】）》")
SENTENCE_END = re.compile(rf"(?:[.!?…]+[{_CLOSERS}]*(?=\s|$))|(?:[。！？；．؟۔।॥]+[{_CLOSERS}]*)")
"""The end of a sentence: Western terminators before whitespace, or a full-width/other-script full stop."""

CLAUSE_END = re.compile(rf"[,;:，、；：][{_CLOSERS}]*\s*")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order, stripped, paragraphs kept apart (no sentence spans two)."""
    sentences = []
    for paragraph in PARAGRAPH_BREAK.split(text):
        start = 0
        for match in SENTENCE_END.finditer(paragraph):
            sentences.append(paragraph[start : match.end()])
            start = match.end()
        sentences.append(paragraph[start:])
    return [" ".join(sentence.split()) for sentence in sentences if sentence.strip()]


def sentence_chunks(text: str, chunk_length: int) -> list[str]:
    """``text`` as chunks of whole sentences of at most ``chunk_length`` UTF-8 bytes each (a longer sentence
    is cut at clauses, spaces or characters), never joining two paragraphs."""
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be a positive number of UTF-8 bytes, got {chunk_length}")
    chunks: list[str] = []
    for paragraph in PARAGRAPH_BREAK.split(text):
        pieces = [piece for sentence in split_sentences(paragraph) for piece in _fit(sentence, chunk_length)]
        chunks += _pack(pieces, chunk_length)
    return chunks


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _pack(pieces: list[str], chunk_length: int) -> list[str]:
    """Greedily join pieces with a space (none between two CJK characters) while the chunk fits."""
    chunks: list[str] = []
    for piece in pieces:
        if chunks:
            joined = _join(chunks[-1], piece)
            if _size(joined) <= chunk_length:
                chunks[-1] = joined
                continue
        chunks.append(piece)
    return chunks


def _join(left: str, right: str) -> str:
    return left + right if _is_wide(left[-1]) and _is_wide(right[0]) else f"{left} {right}"


def _is_wide(character: str) -> bool:
    """CJK scripts and full-width punctuation, written without spaces between sentences."""
    return (
        "\u2e80" <= character <= "\u9fff"
        or "\uac00" <= character <= "\ud7af"
        or "\uff00" <= character <= "\uffef"
    )


def _fit(sentence: str, chunk_length: int) -> list[str]:
    """``sentence`` cut into pieces of at most ``chunk_length`` bytes, at the coarsest boundary that works."""
    if _size(sentence) <= chunk_length:
        return [sentence]
    clauses = _split_after(sentence, CLAUSE_END)
    if len(clauses) > 1:
        return _pack([piece for clause in clauses for piece in _fit(clause, chunk_length)], chunk_length)
    words = sentence.split(" ")
    if len(words) > 1:
        return _pack([piece for word in words for piece in _fit(word, chunk_length)], chunk_length)
    pieces, current = [], ""
    for character in sentence:
        if current and _size(current + character) > chunk_length:
            pieces.append(current)
            current = ""
        current += character
    return [*pieces, current]


def _split_after(text: str, pattern: re.Pattern) -> list[str]:
    pieces, start = [], 0
    for match in pattern.finditer(text):
        pieces.append(text[start : match.end()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [piece for piece in pieces if piece]
