"""OpenAI's ``POST /v1/audio/speech`` (what the ``openai`` client, open-webui and many apps call).

OpenAI's fields keep their meaning; S2's sampling options and inline reference clips are extra fields (the
``openai`` client sends them with ``extra_body``). ``instructions`` becomes S2's inline instruction markup,
``[instructions]`` at the start of the text (of every speaker turn when the input has turns): that is how S2
itself is told how to speak.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ..processing.markup import SPEAKER_TAG
from .audio_formats import FORMATS
from .speech import ApiError, ReferenceClip, SpeechInput, SpeechService
from .voices import DEFAULT_VOICE

MAX_INSTRUCTIONS_CHARS = 500

router = APIRouter()


class VoiceId(BaseModel):
    id: str


class InlineReference(BaseModel):
    """A reference clip in the request: the file's bytes in base64 (or a ``data:`` URL) and its transcript."""

    audio: str
    text: str


class SpeechBody(BaseModel):
    """The request body. Unknown fields are ignored, as OpenAI's API does for forward compatibility."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str
    voice: str | VoiceId = DEFAULT_VOICE
    instructions: str | None = None
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: Literal["audio", "sse"] | None = None
    # S2 extras
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    chunk_length: int | None = None
    references: list[InlineReference] = []


def with_instructions(text: str, instructions: str | None) -> str:
    """``[instructions]`` before the text, or after every ``<|speaker:N|>`` tag when the text has turns (S2
    drops text before the first turn, so a plain prefix would be lost there)."""
    if instructions is None or not instructions.strip():
        return text
    if "[" in instructions or "]" in instructions:
        raise ApiError(
            400, "instructions must not contain '[' or ']' (they become one inline [instruction] tag)",
            param="instructions", code="invalid_value",
        )  # fmt: skip
    if len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise ApiError(
            400, f"instructions are {len(instructions)} characters; at most {MAX_INSTRUCTIONS_CHARS} are allowed",
            param="instructions", code="invalid_value",
        )  # fmt: skip
    tag = f"[{' '.join(instructions.split())}] "
    if SPEAKER_TAG.search(text):
        return SPEAKER_TAG.sub(lambda match: match.group(0) + tag, text)
    return tag + text


def speech_input(body: SpeechBody, service: SpeechService) -> SpeechInput:
    """Check the OpenAI fields and map them onto a :class:`SpeechInput`."""
    audio_format = FORMATS.get(body.response_format)
    if audio_format is None:
        raise ApiError(
            400, f"response_format {body.response_format!r} is not supported; use one of {sorted(FORMATS)}",
            param="response_format", code="unsupported_format",
        )  # fmt: skip
    if not 0.25 <= body.speed <= 4.0:
        raise ApiError(
            400, f"speed must be in [0.25, 4.0], got {body.speed}", param="speed", code="invalid_value"
        )
    if body.speed != 1.0:
        raise ApiError(
            400, f"speed {body.speed} is not supported: S2 speaks at its own pace (only 1.0); ask for a pace with "
            "instructions, e.g. 'speaking slowly'", param="speed", code="unsupported_value",
        )  # fmt: skip
    if body.stream_format is not None and not audio_format.streamable:
        streamable = sorted(name for name, fmt in FORMATS.items() if fmt.streamable)
        raise ApiError(
            400, f"response_format {audio_format.name!r} cannot be streamed (stream_format={body.stream_format!r});"
            f" use one of {streamable}", param="response_format", code="unsupported_format",
        )  # fmt: skip
    service.check_text(body.input, "input")
    return SpeechInput(
        text=with_instructions(body.input, body.instructions),
        audio_format=audio_format,
        stream=body.stream_format,
        voice=body.voice.id if isinstance(body.voice, VoiceId) else body.voice,
        references=[
            ReferenceClip(ref.audio, ref.text, f"references[{i}]") for i, ref in enumerate(body.references)
        ],
        seed=body.seed,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        repetition_penalty=body.repetition_penalty,
        max_new_tokens=body.max_new_tokens,
        chunk_length=body.chunk_length,
    )


@router.post("/v1/audio/speech")
async def create_speech(body: SpeechBody, request: Request) -> Response:
    service: SpeechService = request.app.state.speech
    return await service.respond(speech_input(body, service), request)
