"""Requests, results and handles of the serving engine, and the thread-safe hand-off between them.

Three threads touch a request: the caller's (``submit``, then iteration or ``result``; possibly an asyncio
event loop), the engine's decode thread (frames) and its audio thread (streamed audio chunks). They meet in
a :class:`_Mailbox` (chunks, in order, then the end or an error) and a :class:`_Signal` (finished), both
usable from threads and from asyncio without tying up an executor thread per waiting client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import RequestCancelledError

if TYPE_CHECKING:
    from ..modeling.generation_options import FishS2GenerationConfig
    from ..processing import FishS2Conversation, FishS2Processor

OUTPUTS = ("audio", "frames")


@dataclass
class SpeechRequest:
    """One text to speak, with its voice, sampling options and what to stream back.

    Args:
        text: the text (S2 markup allowed: ``<|speaker:N|>`` turns, inline ``[tags]``). Text with several
            speaker-turn chunks is generated chunk after chunk in the same slot, each chunk conditioned on
            the earlier ones, exactly like ``generate_long``.
        references: reference voices as the processor takes them: ``{"text": transcript, "audio": path |
            bytes | array, "sampling_rate"?}`` or ``{"text": transcript, "codes": [num_codebooks, T]}`` (a
            saved voice: no audio encoding needed).
        seed: the request's own random stream (``None``: a fresh seed, reported in the result).
        do_sample: ``False`` decodes greedily.
        temperature, top_p, top_k, repetition_penalty, max_new_tokens, ras_window_size, ras_temperature,
            ras_top_p: as in ``generate``; ``None`` takes the model's ``generation_config`` value (``top_k=0``
            disables top-k). ``max_new_tokens`` counts frames per chunk.
        output: ``"audio"`` (iteration yields 1-D float32 waveforms at ``engine.sampling_rate``) or
            ``"frames"`` (iteration yields codes ``[num_codebooks, n]``).
        first_chunk_frames: frames in the first streamed chunk (small = early first audio).
        chunk_frames: frames in each later chunk.
        chunk_length: long-text chunk size in UTF-8 bytes (``None``: the processor's default).
    """

    text: str
    references: list[dict] | None = None
    seed: int | None = None
    do_sample: bool = True
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    ras_window_size: int | None = None
    ras_temperature: float | None = None
    ras_top_p: float | None = None
    output: str = "audio"
    first_chunk_frames: int = 5
    chunk_frames: int = 20
    chunk_length: int | None = None


@dataclass
class SpeechResult:
    """The whole output of a request.

    Args:
        codes: ``[num_codebooks, N]`` generated codes (all chunks; ``<|im_end|>`` frames excluded).
        audio: for ``output="audio"``, ``processor.decode(codes)`` as a float32 array; else ``None``.
        eos_reached: True when every chunk ended with ``<|im_end|>`` (False: a length limit stopped one).
        frames: N.
        seed: the seed the request ran with (the one given, or the fresh one drawn for it).
        time_to_first_audio: seconds from ``submit`` to the first streamed chunk (audio decoded, or frames
            for ``output="frames"``); for a request never iterated, to the moment its first chunk's frames
            existed. ``None`` if it produced no frame.
    """

    codes: torch.LongTensor
    audio: np.ndarray | None
    eos_reached: bool
    frames: int
    seed: int
    time_to_first_audio: float | None


_END = object()


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class _Waiters:
    """asyncio futures waiting on a thread-side condition; woken from any thread."""

    def __init__(self) -> None:
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def add(self) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._futures.append((loop, future))
        return future

    def remove(self, future: asyncio.Future) -> None:
        self._futures = [(loop, f) for loop, f in self._futures if f is not future]

    def wake_all(self) -> None:
        """Call without holding the owner's lock (``call_soon_threadsafe`` may block briefly)."""
        futures, self._futures = self._futures, []
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # that event loop is closed: its consumer is gone
                loop.call_soon_threadsafe(_wake, future)


class _Mailbox:
    """Chunks from a producer thread to one consumer (thread or asyncio task), then the end or an error."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._items: deque = deque()
        self._closed = False
        self._error: BaseException | None = None
        self._waiters = _Waiters()

    def put(self, item: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._items.append(item)
            self._lock.notify_all()
        self._waiters.wake_all()

    def close(self, error: BaseException | None = None, *, discard: bool = False) -> None:
        """No more items; the consumer gets what is queued (nothing with ``discard``), then ``error`` raised
        (or the end)."""
        with self._lock:
            if self._closed:
                return
            self._closed, self._error = True, error
            if discard:
                self._items.clear()
            self._lock.notify_all()
        self._waiters.wake_all()

    def _take(self) -> Any:
        """Next item, :data:`_END`, or raise; ``None`` when nothing is there yet (lock held)."""
        if self._items:
            return self._items.popleft()
        if self._closed:
            if self._error is not None:
                raise self._error
            return _END
        return None

    def get(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while (item := self._take()) is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no chunk within {timeout} s")
                self._lock.wait(remaining)
            return item

    async def aget(self) -> Any:
        while True:
            with self._lock:
                item = self._take()
                if item is not None:
                    return item
                future = self._waiters.add()
            try:
                await future
            finally:
                with self._lock:
                    self._waiters.remove(future)


class _Signal:
    """A one-shot event that threads and asyncio tasks can wait for."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._set = False
        self._waiters = _Waiters()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            self._set = True
            self._lock.notify_all()
        self._waiters.wake_all()

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._set, timeout)

    async def await_set(self) -> None:
        while True:
            with self._lock:
                if self._set:
                    return
                future = self._waiters.add()
            try:
                await future
            finally:
                with self._lock:
                    self._waiters.remove(future)


class _Chunker:
    """Cuts a growing list of frames into stream chunks: ``first`` frames, then ``size`` at a time, then the
    rest once the request has ended."""

    def __init__(self, first: int, size: int) -> None:
        self.first, self.size, self.emitted = first, size, 0

    def next_span(self, available: int, ended: bool) -> tuple[int, int] | None:
        wanted = self.first if self.emitted == 0 else self.size
        start = self.emitted
        if available - start >= wanted:
            stop = start + wanted
        elif ended and available > start:
            stop = available
        else:
            return None
        self.emitted = stop
        return start, stop


class _Job:
    """The engine's record of one request (the handle is the caller's view of it; the job never refers
    to the handle, so a handle nobody holds can be collected and cancel its request)."""

    def __init__(
        self,
        request_id: str,
        request: SpeechRequest,
        *,
        options: FishS2GenerationConfig,
        seed: int,
        chunks: list[str],
        conversation: FishS2Conversation,
        max_new_tokens: int,
        device: torch.device,
    ) -> None:
        self.id = request_id
        self.request = request
        self.options = options
        self.seed = seed
        self.chunks = chunks
        self.conversation = conversation
        self.max_new_tokens = max_new_tokens
        self.generator = torch.Generator(device=device).manual_seed(seed) if options.do_sample else None
        self.submitted_at = time.monotonic()
        self.lock = threading.Lock()
        self.status = "queued"  # queued → running → completed | cancelled | failed
        self.error: BaseException | None = None
        self.cancel_requested = False
        self.failure: BaseException | None = None  # set by another thread; the decode thread fails the job
        self.first_prompt: tuple[torch.Tensor, torch.Tensor] | None = None  # built by submit()
        self.frames: list[torch.Tensor] = []  # kept frames' codes [num_codebooks], all chunks
        self.eos_reached = True
        # decode thread only: the chunk being generated
        self.chunk_index = 0
        self.chunk_start = 0  # index in `frames` where the current chunk's frames begin
        self.chunk_steps = 0  # frames computed for the current chunk (its <|im_end|> frame included)
        self.chunk_budget = 0
        self.slot: int | None = None
        # consumer side
        self.mailbox = _Mailbox()
        self.finished = _Signal()
        self.chunker = _Chunker(request.first_chunk_frames, request.chunk_frames)
        self.streaming = False  # the consumer has started iterating
        self.stream_lock = threading.Lock()  # one thread at a time cuts/decodes this job's chunks
        self.ttfa_recorded = False
        self.audio_decoder = None
        self.first_frames_at: float | None = None  # the first chunk's frames existed
        self.first_chunk_at: float | None = None  # the first chunk went to the consumer
        self.audio: np.ndarray | None = None

    @property
    def done(self) -> bool:
        return self.status in ("completed", "cancelled", "failed")

    def request_cancel(self, failure: BaseException | None = None) -> bool:
        """Ask the engine to drop this request at the next frame boundary (as failed with ``failure`` if
        given, else as cancelled); False if it has already ended."""
        with self.lock:
            if self.done or self.cancel_requested:
                return False
            self.cancel_requested, self.failure = True, failure
            return True

    def codes(self) -> torch.LongTensor:
        with self.lock:
            frames = list(self.frames)
        if not frames:
            return torch.zeros(self.conversation.encoder.num_codebooks, 0, dtype=torch.long)
        return torch.stack(frames, dim=1)

    def time_to_first_audio(self) -> float | None:
        moment = self.first_chunk_at if self.first_chunk_at is not None else self.first_frames_at
        return None if moment is None else moment - self.submitted_at


class RequestHandle:
    """The caller's side of a submitted request: stream its chunks, wait for its result, cancel it.

    Iterate once, from a thread (``for chunk in handle``) or an event loop (``async for chunk in handle``):
    ``output="audio"`` yields 1-D float32 arrays, ``output="frames"`` LongTensors ``[num_codebooks, n]``.
    Leaving the iteration early (``break``, an exception, a cancelled task) cancels the request, and so
    does dropping the last reference to the handle: a vanished consumer never keeps a slot busy.
    """

    def __init__(self, job: _Job, engine_hooks: _EngineHooks) -> None:
        self._job = job
        self._hooks = engine_hooks
        weakref.finalize(self, engine_hooks.cancel, job)

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def seed(self) -> int:
        return self._job.seed

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``completed``, ``cancelled`` or ``failed``."""
        return self._job.status

    def cancel(self) -> bool:
        """Stop the request; its slot is free for the next request within one frame. False if it had
        already finished."""
        return self._hooks.cancel(self._job)

    def __iter__(self) -> Iterator[np.ndarray | torch.Tensor]:
        self._hooks.start_streaming(self._job)
        try:
            while (item := self._job.mailbox.get()) is not _END:
                yield item
        finally:
            self._hooks.cancel(self._job)

    async def __aiter__(self) -> AsyncIterator[np.ndarray | torch.Tensor]:
        self._hooks.start_streaming(self._job)
        try:
            while (item := await self._job.mailbox.aget()) is not _END:
                yield item
        finally:
            self._hooks.cancel(self._job)

    def result(self, timeout: float | None = None) -> SpeechResult:
        """Wait for the request to finish; raises its error, :class:`RequestCancelledError` if cancelled,
        ``TimeoutError`` if ``timeout`` seconds pass first."""
        if not self._job.finished.wait(timeout):
            raise TimeoutError(f"request {self.id} did not finish within {timeout} s")
        return self._hooks.result(self._job)

    async def aresult(self) -> SpeechResult:
        """``result()`` for asyncio: waits without blocking the event loop (audio is decoded in a thread)."""
        await self._job.finished.await_set()
        if (
            self._job.status == "completed"
            and self._job.request.output == "audio"
            and self._job.audio is None
        ):
            return await asyncio.to_thread(self._hooks.result, self._job)
        return self._hooks.result(self._job)

    def __repr__(self) -> str:
        return f"RequestHandle(id={self.id!r}, status={self.status!r})"


class _EngineHooks:
    """What a handle may ask of its engine (kept small so a handle does not keep the engine alive)."""

    def __init__(self, engine: Any, processor: FishS2Processor) -> None:
        self._engine = weakref.ref(engine)
        self._processor = processor

    def cancel(self, job: _Job) -> bool:
        engine = self._engine()
        if engine is None:
            return job.request_cancel()
        return engine._cancel(job)

    def start_streaming(self, job: _Job) -> None:
        engine = self._engine()
        if engine is not None:
            engine._start_streaming(job)

    def result(self, job: _Job) -> SpeechResult:
        if job.status == "cancelled":
            raise RequestCancelledError(f"request {job.id} was cancelled")
        if job.error is not None:
            raise job.error
        codes = job.codes()
        if job.request.output == "audio" and job.audio is None:
            job.audio = self._processor.decode(codes, return_tensors="np")
        return SpeechResult(
            codes=codes,
            audio=job.audio,
            eos_reached=job.eos_reached,
            frames=codes.shape[1],
            seed=job.seed,
            time_to_first_audio=job.time_to_first_audio(),
        )
