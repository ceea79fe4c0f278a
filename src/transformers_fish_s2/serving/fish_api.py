"""fish-speech's ``POST /v1/tts``, so the authors' clients and SDKs work unchanged.

Their clients send a msgpack body (``Content-Type: application/msgpack``; reference clips as raw bytes) or
JSON (clips in base64). Fields and defaults follow the authors' request schema. ``latency``, ``normalize``,
``use_memory_cache``, ``stream_tokens`` and ``stream_chunk_size`` are accepted and have no effect: text is not
normalized, encoded clips are always cached, and streams always carry audio as it is made.
"""

from __future__ import annotations

import json
from typing import Literal

import msgpack
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from .audio_formats import FORMATS
from .speech import ApiError, ReferenceClip, SpeechInput, SpeechService

router = APIRouter()


class FishReference(BaseModel):
    audio: bytes | str  # raw bytes (msgpack) or base64 (JSON)
    text: str


class TTSBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str
    chunk_length: int = Field(default=200, ge=100, le=1000)
    format: Literal["wav", "pcm", "mp3", "opus", "flac"] = "wav"
    latency: Literal["normal", "balanced"] = "normal"
    references: list[FishReference] = []
    reference_id: str | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    use_memory_cache: Literal["on", "off"] = "off"
    normalize: bool = True
    streaming: bool = False
    stream_tokens: bool = False
    stream_chunk_size: int = Field(default=20, ge=1, le=200)
    max_new_tokens: int = Field(default=1024, ge=0)
    top_p: float = 0.8
    repetition_penalty: float = 1.1
    temperature: float = 0.8


async def read_body(request: Request) -> dict:
    """The body as a dict, from msgpack or JSON (by ``Content-Type``)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        if content_type == "application/msgpack":
            data = msgpack.unpackb(raw, raw=False)
        elif content_type == "application/json":
            data = json.loads(raw)
        else:
            raise ApiError(
                415, f"Content-Type {content_type or 'none'!r} is not supported; send application/msgpack or "
                "application/json", code="unsupported_media_type",
            )  # fmt: skip
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise ApiError(400, f"the body is not valid {content_type}: {error}", code="invalid_body") from None
    if not isinstance(data, dict):
        raise ApiError(
            400, f"the body must be an object (a map), got {type(data).__name__}", code="invalid_body"
        )
    return data


def speech_input(body: TTSBody, service: SpeechService) -> SpeechInput:
    audio_format = FORMATS[body.format]
    if body.streaming and not audio_format.streamable:
        raise ApiError(400, f"format {body.format!r} cannot be streamed; use wav", param="format")
    service.check_text(body.text, "text")
    return SpeechInput(
        text=body.text,
        audio_format=audio_format,
        stream="audio" if body.streaming else None,
        voice=body.reference_id,
        references=[
            ReferenceClip(ref.audio, ref.text, f"references[{i}]") for i, ref in enumerate(body.references)
        ],
        seed=body.seed,
        temperature=body.temperature,
        top_p=body.top_p,
        repetition_penalty=body.repetition_penalty,
        max_new_tokens=body.max_new_tokens or None,  # 0: no limit of its own (the model's default)
        chunk_length=body.chunk_length,
        text_param="text",
        voice_param="reference_id",
    )


@router.post("/v1/tts")
async def tts(request: Request) -> Response:
    service: SpeechService = request.app.state.speech
    try:
        body = TTSBody.model_validate(await read_body(request))
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"])
        raise ApiError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from None
    return await service.respond(speech_input(body, service), request)
