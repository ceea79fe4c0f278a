"""Errors of the serving engine; a server maps each to one HTTP status (given in each docstring)."""

from __future__ import annotations


class InvalidRequestError(ValueError):
    """The request cannot be served as given (HTTP 400). ``field`` names the offending request field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class QueueFullError(RuntimeError):
    """Every slot is busy and the waiting queue is full (HTTP 429 with ``Retry-After``)."""


class EngineClosedError(RuntimeError):
    """The engine is not running: not started yet, shutting down or shut down (HTTP 503)."""


class RequestCancelledError(RuntimeError):
    """Raised by a handle's iteration/``result`` after the request was cancelled."""


class RequestFailedError(RuntimeError):
    """The request failed while being generated or decoded (HTTP 500); the cause is chained."""
