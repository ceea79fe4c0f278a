"""``/v1/voices``: save a reference clip once as a named voice, list, show and delete voices."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..processing.audio import ReferenceEncoder, load_audio
from .speech import ApiError
from .voices import Voice, VoiceError, VoiceStore

router = APIRouter()

TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("", "0", "false", "no", "off")


def _describe(voice: Voice, frame_rate: float) -> dict:
    frames = voice.codes.shape[1]
    return {
        "name": voice.name,
        "text": voice.text,
        "frames": frames,
        "seconds": round(frames / frame_rate, 3),
    }


def _voice_error(error: VoiceError, param: str = "name") -> ApiError:
    return ApiError(error.status, str(error), param=param)


@router.post("/v1/voices", status_code=201)
async def add_voice(request: Request) -> dict:
    """Multipart form: ``name``, ``text`` (the clip's transcript), ``audio`` (the clip file), ``overwrite``."""
    store: VoiceStore = request.app.state.voices
    engine = request.app.state.engine
    settings = request.app.state.settings
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(
            415,
            "send the voice as multipart/form-data (name, text, audio file)",
            code="unsupported_media_type",
        )
    form = await request.form(max_files=1, max_fields=8)
    fields = {}
    for key in ("name", "text", "overwrite"):
        value = form.get(key, "" if key == "overwrite" else None)
        if value is None:
            raise ApiError(400, f"the form has no {key!r} field", param=key)
        if not isinstance(value, str):
            raise ApiError(400, f"{key!r} must be a text field, not a file", param=key)
        fields[key] = value
    audio = form.get("audio")
    if not isinstance(audio, UploadFile):
        raise ApiError(400, "the form has no 'audio' file (the reference clip)", param="audio")
    overwrite = fields["overwrite"].strip().lower()
    if overwrite not in TRUE_VALUES + FALSE_VALUES:
        raise ApiError(
            400, f"overwrite must be true or false, got {fields['overwrite']!r}", param="overwrite"
        )
    try:
        store.check_name_available(fields["name"], overwrite=overwrite in TRUE_VALUES)
    except VoiceError as error:
        raise _voice_error(error) from None
    if not fields["text"].strip():
        raise ApiError(400, "text is empty; give the transcript of the clip", param="text")
    data = await audio.read()

    def encode():
        waveform = load_audio(
            data, target_rate=engine.sampling_rate, name="audio", max_seconds=settings.max_reference_seconds
        )
        return ReferenceEncoder(engine.processor.codec, max_entries=0)(waveform)

    try:
        codes = await run_in_threadpool(encode)
    except ValueError as error:
        raise ApiError(400, str(error), param="audio", code="invalid_audio") from None
    try:
        voice = store.add(
            fields["name"], codes, fields["text"], sampling_rate=engine.sampling_rate,
            overwrite=overwrite in TRUE_VALUES,
        )  # fmt: skip
    except VoiceError as error:
        raise _voice_error(error) from None
    return _describe(voice, engine.processor.codec.config.frame_rate)


@router.get("/v1/voices")
async def list_voices(request: Request) -> dict:
    store: VoiceStore = request.app.state.voices
    frame_rate = request.app.state.engine.processor.codec.config.frame_rate
    voices = []
    for name in store.names():
        try:
            voices.append(_describe(store.get(name), frame_rate))
        except VoiceError:  # removed meanwhile, or unreadable: not listed
            continue
    return {"object": "list", "data": voices}


@router.get("/v1/voices/{name}")
async def get_voice(name: str, request: Request) -> dict:
    store: VoiceStore = request.app.state.voices
    try:
        voice = store.get(name)
    except VoiceError as error:
        raise _voice_error(error) from None
    return _describe(voice, request.app.state.engine.processor.codec.config.frame_rate)


@router.delete("/v1/voices/{name}")
async def delete_voice(name: str, request: Request) -> dict:
    store: VoiceStore = request.app.state.voices
    try:
        store.remove(name)
    except VoiceError as error:
        raise _voice_error(error) from None
    return {"name": name, "deleted": True}
