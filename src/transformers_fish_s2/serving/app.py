"""The FastAPI application: OpenAI and fish-speech speech routes, voices, health, readiness and metrics.

:func:`create_app` takes an engine that is not started yet; the app's lifespan starts it and, at shutdown,
lets it finish in-flight requests for ``settings.drain_seconds``. Every error is answered in OpenAI's error
shape. One ASGI middleware (:class:`Guard`) checks the API key, bounds the body size and counts requests.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import fish_api, openai_api, voices_api
from .engine import FishS2Engine
from .metrics import ServerMetrics
from .speech import ApiError, ServerSettings, SpeechService
from .voices import VoiceStore

OPEN_PATHS = frozenset({"/health", "/ready"})
"""Routes answered without the API key (probes of orchestrators carry no credentials)."""


class Guard:
    """API key (bearer token, constant-time compare), body size limit, and request counting by route."""

    def __init__(self, app: ASGIApp, settings: ServerSettings, metrics: ServerMetrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self._key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal.response()(scope, receive, send_counted)
            else:
                await self.app(scope, self._limited(receive), send_counted)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("unmatched" if status == 404 else scope["path"])
            self.metrics.count_request(scope["method"], path, status)

    def _refusal(self, scope: Scope) -> ApiError | None:
        headers = {key.decode("latin-1").lower(): value for key, value in scope["headers"]}
        if self._key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get("authorization", b"")
            token = given[7:] if given[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(token, self._key):
                return ApiError(
                    401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_body_bytes):
            return self._too_large()
        return None

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            f"the request body is larger than {self.settings.max_body_bytes} bytes",
            code="body_too_large",
        )

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that fails once more body arrives than allowed (chunked uploads have no length)."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.settings.max_body_bytes:
                    raise self._too_large()
            return message

        return limited


def create_app(engine: FishS2Engine, voices: VoiceStore, settings: ServerSettings | None = None) -> FastAPI:
    """The server's ASGI app around a not yet started ``engine``."""
    settings = settings or ServerSettings()
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.shutdown(drain_timeout=settings.drain_seconds)

    app = FastAPI(title="fish-s2 speech server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.voices = voices
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.speech = SpeechService(engine, voices, settings, metrics)
    app.state.draining = False
    for module in (openai_api, fish_api, voices_api):
        app.include_router(module.router)
    _add_operations(app, engine, settings, metrics)
    _add_error_handlers(app)
    app.add_middleware(Guard, settings=settings, metrics=metrics)
    return app


def _add_operations(
    app: FastAPI, engine: FishS2Engine, settings: ServerSettings, metrics: ServerMetrics
) -> None:
    @app.get("/health")
    async def health() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """The model is loaded and the engine takes requests (not while draining at shutdown)."""
        if engine.running and not request.app.state.draining:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "draining" if engine.running else "not running"}, status_code=503)

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": settings.model_name, "object": "model", "created": 0, "owned_by": "fishaudio"}],
        }

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(engine.metrics()), media_type="text/plain; version=0.0.4")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        location = [str(part) for part in first["loc"] if part != "body"]
        param = ".".join(location) or None
        message = f"{param}: {first['msg']}" if param else first["msg"]
        return ApiError(400, message, param=param, code="invalid_value").response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        return ApiError(error.status_code, str(error.detail), headers=error.headers).response()
