"""What the OpenAI and fish-speech endpoints share: limits, errors, voices and clips → an engine request, and
the engine's output → an HTTP response (complete file, audio stream or server-sent events).

Both APIs first turn their body into a :class:`SpeechInput`; from there on a request is served the same way
whichever API it came through.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..processing.audio import load_audio
from .audio_formats import AudioFormat, AudioStreamEncoder, encode_audio
from .engine import FishS2Engine
from .errors import EngineClosedError, InvalidRequestError, QueueFullError, RequestFailedError
from .metrics import ServerMetrics
from .request import RequestHandle, SpeechRequest
from .voices import DEFAULT_VOICE, VoiceError, VoiceStore

logger = logging.getLogger("transformers_fish_s2.server")

STREAM_FORMATS = ("audio", "sse")


@dataclass
class ServerSettings:
    """Limits and options of one server (``fish-s2 serve`` flags)."""

    model_name: str = "s2-pro"
    api_key: str | None = None
    max_input_chars: int = 4096
    max_references: int = 4
    max_reference_seconds: float = 60.0
    max_body_bytes: int = 32 * 2**20
    retry_after_seconds: int = 1
    drain_seconds: float = 30.0
    first_chunk_frames: int = 5
    chunk_frames: int = 20


class ApiError(Exception):
    """An HTTP error answered in OpenAI's error shape ``{"error": {message, type, param, code}}``."""

    TYPES = {
        401: "authentication_error",
        404: "not_found_error",
        409: "conflict_error",
        429: "rate_limit_error",
    }

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = self.TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return Response(
            json.dumps(self.body()),
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )


@dataclass
class ReferenceClip:
    """An inline reference: the clip's file bytes (or base64 of them) and its transcript."""

    audio: bytes | str
    text: str
    param: str  # where it came from, for error messages: "references[0]"


@dataclass
class SpeechInput:
    """One speech request, whichever API it came through."""

    text: str
    audio_format: AudioFormat
    stream: str | None = None  # None (one complete file), "audio" or "sse"
    voice: str | None = None
    references: list[ReferenceClip] = field(default_factory=list)
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    chunk_length: int | None = None
    text_param: str = "input"
    voice_param: str = "voice"


def decode_base64(value: str, param: str) -> bytes:
    """Base64 (standard alphabet, or a ``data:...;base64,`` URL) to bytes; a 400 naming ``param`` if invalid."""
    if value.startswith("data:") and ";base64," in value:
        value = value.split(";base64,", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{param} is not valid base64", param=param, code="invalid_base64") from None


def engine_error(error: Exception, retry_after: int = 1, voice_param: str = "voice") -> ApiError:
    """The HTTP answer to an error of ``engine.submit`` or of a request's result."""
    if isinstance(error, InvalidRequestError):
        return ApiError(400, str(error), param=error.field, code="invalid_value")
    if isinstance(error, QueueFullError):
        return ApiError(429, str(error), code="queue_full", headers={"Retry-After": str(retry_after)})
    if isinstance(error, EngineClosedError):
        return ApiError(503, str(error), code="unavailable", headers={"Retry-After": str(retry_after)})
    if isinstance(error, VoiceError):  # in a speech request an unknown voice is a bad value, not a lost page
        return ApiError(
            400 if error.status == 404 else error.status, str(error), param=voice_param, code="invalid_voice"
        )
    return ApiError(500, f"speech generation failed: {error}", code="generation_failed")


class SpeechService:
    """Serves :class:`SpeechInput` requests on the engine."""

    def __init__(
        self, engine: FishS2Engine, voices: VoiceStore, settings: ServerSettings, metrics: ServerMetrics
    ) -> None:
        self.engine = engine
        self.voices = voices
        self.settings = settings
        self.metrics = metrics

    # --- request side ------------------------------------------------------------------------------

    def check_text(self, text: str, param: str) -> None:
        if not text.strip():
            raise ApiError(400, f"{param} is empty; give the text to speak", param=param, code="empty_input")
        limit = self.settings.max_input_chars
        if len(text) > limit:
            raise ApiError(
                400, f"{param} is {len(text)} characters; at most {limit} are allowed", param=param,
                code="input_too_long",
            )  # fmt: skip

    def _references(self, speech: SpeechInput) -> list[dict] | None:
        """Saved voice and inline clips as the processor's reference dicts (clips decoded, length-checked)."""
        references = []
        if speech.voice not in (None, DEFAULT_VOICE):
            references.append(self.voices.get(speech.voice).reference())
        if len(speech.references) > self.settings.max_references:
            raise ApiError(
                400, f"{len(speech.references)} references given; at most {self.settings.max_references} are "
                "allowed", param="references", code="too_many_references",
            )  # fmt: skip
        for clip in speech.references:
            audio = clip.audio
            if isinstance(audio, str):
                audio = decode_base64(audio, f"{clip.param}.audio")
            if not isinstance(clip.text, str) or not clip.text.strip():
                raise ApiError(
                    400, f"{clip.param}.text is empty; give the clip's transcript", param=f"{clip.param}.text"
                )
            try:
                waveform = load_audio(
                    audio,
                    target_rate=self.engine.sampling_rate,
                    name=f"{clip.param}.audio",
                    max_seconds=self.settings.max_reference_seconds,
                )
            except (ValueError, TypeError) as error:
                raise ApiError(400, str(error), param=f"{clip.param}.audio", code="invalid_audio") from None
            references.append(
                {"text": clip.text, "audio": waveform, "sampling_rate": self.engine.sampling_rate}
            )
        return references or None

    def _submit(self, speech: SpeechInput) -> RequestHandle:
        try:
            references = self._references(speech)
            return self.engine.submit(
                SpeechRequest(
                    speech.text,
                    references,
                    seed=speech.seed,
                    temperature=speech.temperature,
                    top_p=speech.top_p,
                    top_k=speech.top_k,
                    repetition_penalty=speech.repetition_penalty,
                    max_new_tokens=speech.max_new_tokens,
                    chunk_length=speech.chunk_length,
                    first_chunk_frames=self.settings.first_chunk_frames,
                    chunk_frames=self.settings.chunk_frames,
                )
            )
        except (InvalidRequestError, QueueFullError, EngineClosedError, VoiceError) as error:
            raise engine_error(error, self.settings.retry_after_seconds, speech.voice_param) from None

    # --- response side -----------------------------------------------------------------------------

    async def respond(self, speech: SpeechInput, request: Request) -> Response:
        """Submit (off the event loop: reference clips are decoded and encoded there) and answer."""
        started = time.monotonic()
        handle = await run_in_threadpool(self._submit, speech)
        headers = {"X-Seed": str(handle.seed), "X-Request-Id": handle.id}
        media_type = speech.audio_format.media_type
        if speech.stream == "sse":
            return StreamingResponse(
                self._events(handle, speech, started), media_type="text/event-stream", headers=headers
            )
        if speech.stream == "audio":
            return StreamingResponse(
                self._audio(handle, speech, started), media_type=media_type, headers=headers
            )
        audio = await self._result_unless_disconnected(handle, request)
        body = await run_in_threadpool(encode_audio, audio, self.engine.sampling_rate, speech.audio_format)
        self.metrics.observe_first_audio(time.monotonic() - started)
        return Response(body, media_type=media_type, headers=headers)

    async def _result_unless_disconnected(self, handle: RequestHandle, request: Request):
        """The complete audio; a client that hangs up while waiting cancels its request."""
        result = asyncio.ensure_future(handle.aresult())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not result.done():
            handle.cancel()
            result.cancel()
            raise ApiError(499, "the client disconnected")
        try:
            return result.result().audio
        except (RequestFailedError, EngineClosedError) as error:
            raise engine_error(error) from None

    async def _chunks(
        self, handle: RequestHandle, speech: SpeechInput, started: float, samples: list[int]
    ) -> AsyncIterator[bytes]:
        """Encoded bytes as the audio is made (``samples`` collects the chunk lengths). Leaving early (the
        client hung up: the response task is cancelled) ends the handle's iteration, which cancels the request
        and frees its slot."""
        encoder = AudioStreamEncoder(speech.audio_format, self.engine.sampling_rate)
        first = True
        try:
            async for chunk in handle:
                samples.append(len(chunk))
                data = encoder.feed(chunk)
                if first:
                    self.metrics.observe_first_audio(time.monotonic() - started)
                    first = False
                if data:
                    yield data
            if tail := encoder.finish():
                yield tail
        finally:
            encoder.close()

    async def _audio(
        self, handle: RequestHandle, speech: SpeechInput, started: float
    ) -> AsyncIterator[bytes]:
        try:
            async for data in self._chunks(handle, speech, started, []):
                yield data
        except (RequestFailedError, EngineClosedError) as error:  # the status line is sent: end the stream
            logger.error(f"request {handle.id} failed while streaming: {error}")

    async def _events(
        self, handle: RequestHandle, speech: SpeechInput, started: float
    ) -> AsyncIterator[bytes]:
        """OpenAI's speech events: ``speech.audio.delta`` with base64 audio, then ``speech.audio.done``."""
        counted: list[int] = []
        try:
            async for data in self._chunks(handle, speech, started, counted):
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
        except (RequestFailedError, EngineClosedError) as error:
            yield _event({"type": "error", **engine_error(error).body()})
            return
        frames = sum(counted) // self.engine.processor.codec.config.frame_length
        prompt = len(self.engine.processor.tokenizer.encode(speech.text))
        usage = {"input_tokens": prompt, "output_tokens": frames, "total_tokens": prompt + frames}
        yield _event({"type": "speech.audio.done", "usage": usage})


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read; the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
