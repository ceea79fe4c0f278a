"""Chat-style conversations, the form CSM users and ``pipeline("text-to-speech")`` pass, as S2 text + references.

A conversation is a list of turns ``{"role": speaker id, "content": ...}``; ``content`` is a string or a list of
items ``{"type": "text", "text": ...}`` and ``{"type": "audio", "audio" or "path": clip, "sampling_rate": ...}``.
Turns with audio are reference clips of their speaker (the text is the clip's transcript); the trailing turns
without audio are what to speak. S2 has no chat template of its own: the turns map onto the prompt the
processor already builds (reference voices in the system message, the text in the user message).

With one speaker the result is exactly ``processor(text, references=...)``; with several, every transcript and
every turn to speak gets its role's ``<|speaker:N|>`` tag, as in docs/dialogue-and-tags.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .markup import SPEAKER_TAG, speaker_tag

_AUDIO_KEYS = ("audio", "path")


@dataclass(frozen=True)
class _Turn:
    speaker: int
    text: str
    audio: dict[str, Any] | None  # {"audio": clip[, "sampling_rate": int]}


def is_conversation(value: object) -> bool:
    """True for one conversation: a non-empty list of dicts that all have ``role`` and ``content``."""
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(turn, dict) and "role" in turn and "content" in turn for turn in value)
    )


def chat_text_and_references(
    conversation: Sequence[dict], name: str = "conversation"
) -> tuple[str, list[dict[str, Any]]]:
    """The text to speak and the references (``{"text", "audio"[, "sampling_rate"]}``) of one conversation.

    Raises ValueError/TypeError naming the turn (``conversation[2]['role']``) for a role that is not a speaker
    id, content of the wrong form, a turn with audio but no transcript, a text-only turn before a turn with audio,
    or a conversation that ends with audio (nothing to speak).
    """
    if not is_conversation(conversation):
        raise TypeError(
            f"{name} must be a non-empty list of turns {{'role': speaker id, 'content': ...}}, "
            f"got {type(conversation).__name__}"
        )
    turns = [_turn(turn, f"{name}[{i}]") for i, turn in enumerate(conversation)]
    first_to_speak = len(turns)
    while first_to_speak > 0 and turns[first_to_speak - 1].audio is None:
        first_to_speak -= 1
    if first_to_speak == len(turns):
        raise ValueError(
            f"the last turn of {name} has audio, so there is nothing to speak; end the conversation with the "
            "turn(s) to speak: text without audio"
        )
    for i, turn in enumerate(turns[:first_to_speak]):
        if turn.audio is None:
            raise ValueError(
                f"{name}[{i}] has no audio, but turns with audio follow it; only the last turns (the ones to "
                "speak) may be text without audio: give every earlier turn its clip"
            )
    one_speaker = len({turn.speaker for turn in turns}) == 1

    def tagged(turn: _Turn) -> str:
        return turn.text if one_speaker else f"{speaker_tag(turn.speaker)}{turn.text}"

    references = [{"text": tagged(turn), **turn.audio} for turn in turns[:first_to_speak]]
    return "".join(tagged(turn) for turn in turns[first_to_speak:]), references


def _turn(turn: dict, name: str) -> _Turn:
    role = turn["role"]
    if isinstance(role, str) and role.isascii() and role.isdigit():
        speaker = int(role)
    elif isinstance(role, int) and not isinstance(role, bool) and role >= 0:
        speaker = role
    else:
        raise ValueError(
            f"{name}['role'] must be a speaker id such as '0' or '1' (the speaker's <|speaker:N|> tag), got {role!r}"
        )
    content = turn["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, (list, tuple)):
        raise TypeError(f"{name}['content'] must be a str or a list of items, got {type(content).__name__}")
    texts, audios = [], []
    for j, item in enumerate(content):
        item_name = f"{name}['content'][{j}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            texts.append(item.get("text"))
        elif kind == "audio":
            audios.append(_audio(item, item_name))
        else:
            raise ValueError(
                f"{item_name} must be {{'type': 'text', 'text': ...}} or {{'type': 'audio', 'audio' or 'path': ...}}, "
                f"got {item!r:.80}"
            )
    if len(texts) != 1 or not isinstance(texts[0], str):
        raise ValueError(f"{name} needs exactly one text item (a str): the words it says, got {len(texts)}")
    if len(audios) > 1:
        raise ValueError(
            f"{name} has {len(audios)} audio items; give each clip its own turn with its transcript"
        )
    if SPEAKER_TAG.search(texts[0]):
        raise ValueError(f"{name} has a <|speaker:N|> tag in its text; the turn's role gives its speaker")
    return _Turn(speaker, texts[0], audios[0] if audios else None)


def _audio(item: dict, name: str) -> dict[str, Any]:
    keys = [key for key in _AUDIO_KEYS if key in item]
    if len(keys) != 1:
        raise ValueError(
            f"{name} must give its clip as exactly one of 'audio' or 'path', got keys {sorted(item)}"
        )
    unknown = set(item) - {"type", "sampling_rate", *_AUDIO_KEYS}
    if unknown:
        raise ValueError(f"{name} has unknown key(s) {sorted(unknown)}")
    rate = {"sampling_rate": item["sampling_rate"]} if "sampling_rate" in item else {}
    return {"audio": item[keys[0]], **rate}
