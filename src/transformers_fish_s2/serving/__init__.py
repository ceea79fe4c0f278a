"""Serving: :class:`FishS2Engine` runs many speech requests at once, batched frame by frame.

See ``docs/engine.md``. The engine is the foundation of the HTTP server and of distributed synthesis.
"""

from .engine import EngineMetrics, FishS2Engine
from .errors import (
    EngineClosedError,
    InvalidRequestError,
    QueueFullError,
    RequestCancelledError,
    RequestFailedError,
)
from .request import RequestHandle, SpeechRequest, SpeechResult

__all__ = [
    "EngineClosedError",
    "EngineMetrics",
    "FishS2Engine",
    "InvalidRequestError",
    "QueueFullError",
    "RequestCancelledError",
    "RequestFailedError",
    "RequestHandle",
    "SpeechRequest",
    "SpeechResult",
]
