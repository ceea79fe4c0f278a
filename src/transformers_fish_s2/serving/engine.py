"""``FishS2Engine``: requests served as they arrive, batched frame by frame (continuous batching).

One decode thread owns a :class:`~.slots.FishS2SlotSession` of ``max_batch_size`` slots. Between two frames it
releases the slots of finished or cancelled requests, prefills waiting requests into free slots (each joins
the running batch at once), and then makes one frame for every busy slot. Every request has its own
sampling options, its own random stream (a ``torch.Generator`` seeded with its seed) and its own stop, so
its codes are those of a solo ``generate`` call (see ``docs/engine.md`` for why and how far this holds).
Audio is decoded per request by the codec's streaming decoder in a separate audio thread, never in the
frame loop.
"""

from __future__ import annotations

import math
import numbers
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch
from transformers.utils import logging

from ..modeling.generation_options import merge_generation_config
from .errors import (
    EngineClosedError,
    InvalidRequestError,
    QueueFullError,
    RequestCancelledError,
    RequestFailedError,
)
from .request import OUTPUTS, RequestHandle, SpeechRequest, SpeechResult, _EngineHooks, _Job
from .slots import FishS2SlotSession

logger = logging.get_logger(__name__)

DEFAULT_MAX_CONTEXT = 4096
"""Cache slots per row when ``max_context`` is not given (or the model's context, if smaller)."""

METRICS_WINDOW_SECONDS = 10.0
"""``frames_per_second`` is measured over this many recent seconds."""

RECENT_TTFA = 1000
"""``time_to_first_audio`` keeps this many recent values."""

_SAMPLING_OPTIONS = ("temperature", "top_p", "top_k", "ras_temperature", "ras_top_p")
_GENERAL_OPTIONS = ("max_new_tokens", "repetition_penalty", "ras_window_size")


@dataclass
class EngineMetrics:
    """A snapshot of the engine's load and history, for a server's ``/metrics``.

    Args:
        queue_depth: requests waiting for a slot.
        active_rows: slots generating now.
        max_batch_size: slots in all.
        frames_total: frames generated for requests since start (kept frames; ``<|im_end|>`` frames excluded).
        frames_per_second: frames per second over the last :data:`METRICS_WINDOW_SECONDS` seconds.
        requests: finished and refused requests by outcome: ``completed``, ``cancelled``, ``failed``,
            ``rejected`` (refused by ``submit``).
        time_to_first_audio: the most recent requests' times to first audio, in seconds (oldest first).
        steps_total: frame steps run (each makes one frame for every busy slot).
    """

    queue_depth: int
    active_rows: int
    max_batch_size: int
    frames_total: int
    frames_per_second: float
    requests: dict[str, int]
    time_to_first_audio: list[float]
    steps_total: int = 0


@dataclass
class _Counters:
    frames_total: int = 0
    steps_total: int = 0
    requests: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("completed", "cancelled", "failed", "rejected"), 0)
    )
    recent_frames: deque = field(default_factory=deque)  # (time, frames) per step
    ttfa: deque = field(default_factory=lambda: deque(maxlen=RECENT_TTFA))


class FishS2Engine:
    """Serve speech requests concurrently on one model, batched at the frame level.

    ::

        with FishS2Engine(model, processor, max_batch_size=8) as engine:
            handle = engine.submit(SpeechRequest("Hello there.", seed=7))
            for chunk in handle:        # or: async for chunk in handle
                play(chunk)             # 1-D float32 audio at engine.sampling_rate
            result = handle.result()    # codes, full audio (= processor.decode(codes)), seed, ...

    Args:
        model: a ``FishS2ForConditionalGeneration`` in eval mode. The engine reads its weights from its decode
            thread; other code may still call ``model.generate`` (it has its own state).
        processor: the matching ``FishS2Processor`` (with its codec for ``output="audio"``).
        max_batch_size: slots, i.e. requests generated at the same time.
        max_queue_size: requests that may wait for a slot; more are refused with :class:`QueueFullError`.
        max_context: cache slots per row = the longest prompt + frames one chunk may use (default: the
            model's context, at most :data:`DEFAULT_MAX_CONTEXT`). The slow KV cache is allocated once at
            ``start()``: ``max_batch_size x max_context`` positions.
        compile: run the frame step through ``torch.compile`` (the prefill stays eager).
        max_ras_window: the largest ``ras_window_size`` a request may ask for.
    """

    def __init__(
        self,
        model,
        processor,
        *,
        max_batch_size: int = 8,
        max_queue_size: int = 64,
        max_context: int | None = None,
        compile: bool = False,
        max_ras_window: int = 64,
    ) -> None:
        for name, value, least in (
            ("max_batch_size", max_batch_size, 1),
            ("max_queue_size", max_queue_size, 0),
            ("max_ras_window", max_ras_window, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        context = model.config.text_config.max_seq_len
        if max_context is None:
            max_context = min(context, DEFAULT_MAX_CONTEXT)
        elif (
            isinstance(max_context, bool)
            or not isinstance(max_context, int)
            or not 2 <= max_context <= context
        ):
            raise ValueError(
                f"max_context must be an integer in [2, {context}] (the model context), got {max_context!r}"
            )
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False, got {compile!r}")
        if compile and model.device.type == "cpu":
            logger.warning(
                "FishS2Engine(compile=True) on a CPU: the compiled engine step was measured slower than the eager "
                "one there (docs/engine.md); compile pays off on a GPU"
            )
        self.model = model
        self.processor = processor
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self.max_context = max_context
        self.max_ras_window = max_ras_window
        self.compile = compile
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._active: dict[int, _Job] = {}
        self._state = "new"  # new → running → closing → closed
        self._deadline = 0.0  # closing: when unfinished requests are failed
        self._session: FishS2SlotSession | None = None
        self._thread: threading.Thread | None = None
        self._audio = _AudioWorker(self)
        self._hooks = _EngineHooks(self, processor)
        self._counters = _Counters()
        self._next_id = 0

    # ------------------------------------------------------------------------------------------------
    # Life cycle
    # ------------------------------------------------------------------------------------------------

    def start(self) -> FishS2Engine:
        """Allocate the slots and start the decode and audio threads (once per engine)."""
        with self._cond:
            if self._state != "new":
                raise EngineClosedError(f"the engine was already started (state: {self._state})")
            self._session = FishS2SlotSession(
                self.model,
                num_slots=self.max_batch_size,
                max_context=self.max_context,
                max_ras_window=self.max_ras_window,
                compile=self.compile,
            )
            self._state = "running"
        self._thread = threading.Thread(target=self._run, name="fish-s2-engine-decode", daemon=True)
        self._thread.start()
        self._audio.start()
        logger.info(
            f"FishS2Engine: {self.max_batch_size} slots x {self.max_context} positions "
            f"({self._session.kv_bytes() / 2**20:.1f} MiB slow KV cache) on {self.model.device}"
        )
        return self

    def shutdown(self, drain_timeout: float | None = None) -> None:
        """Stop accepting requests; let the queued and running ones finish for up to ``drain_timeout``
        seconds (``None`` or 0: no grace), then fail what is left with :class:`EngineClosedError` and stop the
        threads. Waiting clients are always released. Idempotent."""
        if drain_timeout is not None and (not isinstance(drain_timeout, numbers.Real) or drain_timeout < 0):
            raise ValueError(f"drain_timeout must be None or a number >= 0, got {drain_timeout!r}")
        with self._cond:
            if self._state == "new":
                self._state = "closed"
                return
            if self._state == "running":
                self._state = "closing"
                self._deadline = time.monotonic() + (drain_timeout or 0.0)
                self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._audio.stop()
        if self._session is not None:
            self._session.release()  # frees the KV cache
            self._session = None

    def __enter__(self) -> FishS2Engine:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    @property
    def running(self) -> bool:
        """True while the engine accepts requests."""
        return self._state == "running"

    @property
    def sampling_rate(self) -> int:
        return self.processor.sampling_rate

    @property
    def num_codebooks(self) -> int:
        return self.model.config.num_codebooks

    # ------------------------------------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------------------------------------

    def submit(self, request: SpeechRequest) -> RequestHandle:
        """Queue a request; returns at once with its handle. Thread-safe.

        The request is validated here, in the caller's thread (this includes encoding reference audio with
        the codec and building the first prompt), so a bad one never reaches the decode thread.

        Raises:
            InvalidRequestError: a field is invalid (``err.field`` names it).
            QueueFullError: all slots are busy and ``max_queue_size`` requests already wait.
            EngineClosedError: the engine is not running.
        """
        if not self.running:
            self._count("rejected")
            raise EngineClosedError(f"the engine is not running (state: {self._state}); start() it first")
        try:
            job = self._prepare(request)
        except InvalidRequestError:
            self._count("rejected")
            raise
        with self._cond:
            if self._state != "running":
                self._count("rejected")
                raise EngineClosedError("the engine is shutting down")
            self._check_capacity()
            self._queue.append(job)
            self._cond.notify_all()
        return RequestHandle(job, self._hooks)

    def _check_capacity(self) -> None:
        with self._cond:
            free = self.max_batch_size - len(self._active)
            if len(self._queue) >= self.max_queue_size + free:
                self._counters.requests["rejected"] += 1
                raise QueueFullError(
                    f"all {self.max_batch_size} slots are busy and {len(self._queue)} requests are waiting "
                    f"(max_queue_size={self.max_queue_size}); retry later"
                )

    def generate(self, request: SpeechRequest, timeout: float | None = None) -> SpeechResult:
        """Submit and wait: ``submit(request).result(timeout)``."""
        return self.submit(request).result(timeout)

    def metrics(self) -> EngineMetrics:
        counters = self._counters
        with self._cond:
            now = time.monotonic()
            self._prune_recent(now)
            recent = counters.recent_frames
            span = now - recent[0][0] if recent else 0.0
            frames = sum(count for _, count in recent)
            return EngineMetrics(
                queue_depth=len(self._queue),
                active_rows=len(self._active),
                max_batch_size=self.max_batch_size,
                frames_total=counters.frames_total,
                frames_per_second=frames / span if span > 0 else 0.0,
                requests=dict(counters.requests),
                time_to_first_audio=list(counters.ttfa),
                steps_total=counters.steps_total,
            )

    # ------------------------------------------------------------------------------------------------
    # Validation (caller's thread)
    # ------------------------------------------------------------------------------------------------

    def _prepare(self, request: SpeechRequest) -> _Job:
        if not isinstance(request, SpeechRequest):
            raise InvalidRequestError("request", f"expected a SpeechRequest, got {type(request).__name__}")
        seed = request.seed
        if seed is None:
            seed = secrets.randbits(63)
        elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            raise InvalidRequestError("seed", f"seed must be None or an integer in [0, 2**64), got {seed!r}")
        if request.output not in OUTPUTS:
            raise InvalidRequestError(
                "output", f"output must be one of {list(OUTPUTS)}, got {request.output!r}"
            )
        if request.output == "audio" and self.processor.codec is None:
            raise InvalidRequestError(
                "output", "output='audio' needs a processor loaded with its codec; ask for output='frames'"
            )
        for name in ("first_chunk_frames", "chunk_frames", "chunk_length"):
            value = getattr(request, name)
            if (name != "chunk_length" or value is not None) and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidRequestError(name, f"{name} must be a positive integer, got {value!r}")
        options = self._generation_options(request)
        if not isinstance(request.text, str):
            raise InvalidRequestError("text", f"text must be a string, got {type(request.text).__name__}")
        try:
            chunks = self.processor.chunk_text(request.text, chunk_length=request.chunk_length)
        except (ValueError, TypeError) as err:
            raise InvalidRequestError("text", str(err)) from None
        if not chunks:
            raise InvalidRequestError("text", "text has nothing to speak (no speaker turn with text)")
        self._check_capacity()  # before the costly part: encoding reference audio
        try:
            conversation = self.processor.conversation(request.references)
        except (ValueError, TypeError, OSError) as err:
            raise InvalidRequestError("references", str(err)) from None
        try:
            first_prompt = conversation.prompt_for(chunks[0])
        except (ValueError, TypeError) as err:
            raise InvalidRequestError("text", str(err)) from None
        prompt_length = first_prompt[0].shape[-1]
        if prompt_length >= self.max_context:
            raise InvalidRequestError(
                "text",
                f"the prompt (references + text) is {prompt_length} tokens but the engine's max_context is "
                f"{self.max_context}; at least one position must stay free for the generated audio",
            )
        with self._cond:
            self._next_id += 1
            request_id = f"req-{self._next_id}"
        job = _Job(
            request_id,
            request,
            options=options,
            seed=seed,
            chunks=chunks,
            conversation=conversation,
            max_new_tokens=options.max_new_tokens,
            device=self.model.device,
        )
        job.first_prompt = first_prompt
        return job

    def _generation_options(self, request: SpeechRequest):
        """The request's options merged over the model's ``generation_config`` and checked by ``generate``'s
        own option table (plus: numbers must be finite, the RAS window must fit the engine's)."""
        names = _GENERAL_OPTIONS + (_SAMPLING_OPTIONS if request.do_sample is True else ())
        given = {name: getattr(request, name) for name in names if getattr(request, name) is not None}
        for name, value in given.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidRequestError(name, f"{name} must be a finite number, got {value!r}")
        try:
            config = merge_generation_config(
                self.model.generation_config, None, {"do_sample": request.do_sample, **given}
            )
        except (ValueError, TypeError) as err:
            message = str(err)
            named = [name for name in ("do_sample", *given) if re.search(rf"\b{name}\b", message)]
            raise InvalidRequestError(named[0] if named else "generation options", message) from None
        if config.ras_window_size > self.max_ras_window:
            raise InvalidRequestError(
                "ras_window_size",
                f"ras_window_size must be at most {self.max_ras_window} (the engine's max_ras_window), got "
                f"{config.ras_window_size}",
            )
        return config

    # ------------------------------------------------------------------------------------------------
    # Decode thread
    # ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with torch.no_grad():
                while self._wait_for_work():
                    self._release_cancelled()
                    self._admit()
                    if self._active:
                        self._step()
            reason = EngineClosedError("the engine shut down before the request finished")
            self._fail_all(reason)
        except BaseException as err:  # a bug in the loop itself: nobody may wait forever
            logger.exception("FishS2Engine: the decode loop stopped on an unexpected error")
            with self._cond:
                self._state = "closing"
            self._fail_all(err)
        finally:
            with self._cond:
                self._state = "closed"

    def _wait_for_work(self) -> bool:
        """Block until there is something to do; False when the loop should end."""
        with self._cond:
            while True:
                if self._state == "closing":
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0 or not (self._queue or self._active):
                        return False
                else:
                    remaining = None
                if self._active or (self._queue and self._session.next_free_slot() is not None):
                    return True
                self._cond.wait(remaining)

    def _release_cancelled(self) -> None:
        for job in list(self._active.values()):
            if job.cancel_requested:
                if job.failure is not None:
                    self._finish(job, "failed", job.failure)
                else:
                    self._finish(job, "cancelled", RequestCancelledError(f"request {job.id} was cancelled"))

    def _admit(self) -> None:
        while True:
            with self._cond:
                slot = self._session.next_free_slot()
                if slot is None or not self._queue:
                    return
                job = self._queue.popleft()
                with job.lock:
                    job.status = "running"
                job.slot = slot
                self._active[slot] = job
            self._start_chunk(job)

    def _start_chunk(self, job: _Job) -> None:
        """Prefill the job's current chunk into its slot (its frame 0 comes with the next step)."""
        session = self._session
        try:
            if job.chunk_index == 0:
                input_ids, audio_codes = job.first_prompt
            else:
                input_ids, audio_codes = job.conversation.prompt_for(job.chunks[job.chunk_index])
            length = input_ids.shape[-1]
            if length >= self.max_context:
                raise ValueError(
                    f"chunk {job.chunk_index + 1} of {len(job.chunks)} needs a {length}-token prompt (earlier "
                    f"chunks included) but max_context is {self.max_context}"
                )
            job.chunk_budget = min(job.max_new_tokens, self.max_context - length)
            job.chunk_start, job.chunk_steps = len(job.frames), 0
            session.prefill(job.slot, input_ids, audio_codes, job.options)
        except Exception as err:
            self._finish(job, "failed", RequestFailedError(f"request {job.id} failed: {err!r}"), cause=err)

    def _step(self) -> None:
        session = self._session
        for slot, job in self._active.items():
            if job.generator is not None:
                session.draw_row_noise(slot, job.generator)
        try:
            frames = session.step()
        except Exception as err:
            logger.exception("FishS2Engine: a frame step failed; failing the requests in it")
            for job in list(self._active.values()):
                self._finish(
                    job, "failed", RequestFailedError(f"request {job.id} failed: {err!r}"), cause=err
                )
            return
        made = 0
        for slot, job in list(self._active.items()):
            before = len(job.frames)
            try:
                self._take_frame(job, frames[slot])
            except Exception as err:
                self._finish(
                    job, "failed", RequestFailedError(f"request {job.id} failed: {err!r}"), cause=err
                )
            made += len(job.frames) - before
        with self._cond:
            self._counters.steps_total += 1
            self._counters.recent_frames.append((time.monotonic(), made))
            self._prune_recent(time.monotonic())

    def _take_frame(self, job: _Job, frame: torch.Tensor) -> None:
        """Record one frame of the job's chunk; end the chunk on ``<|im_end|>`` or its frame budget."""
        job.chunk_steps += 1
        end_of_speech = int(frame[0]) == self.model.config.eos_token_id
        if not end_of_speech:
            with job.lock:
                job.frames.append(frame[1:].clone())
            with self._cond:
                self._counters.frames_total += 1
            if job.first_frames_at is None and len(job.frames) >= job.request.first_chunk_frames:
                job.first_frames_at = time.monotonic()
            self._deliver(job)
        if end_of_speech or job.chunk_steps >= job.chunk_budget:
            job.eos_reached &= end_of_speech
            if job.chunk_index + 1 < len(job.chunks):
                job.conversation.append_generated(
                    job.chunks[job.chunk_index], job.codes()[:, job.chunk_start :]
                )
                job.chunk_index += 1
                self._start_chunk(job)
            else:
                self._finish(job, "completed")

    def _finish(
        self, job: _Job, status: str, error: BaseException | None = None, cause: BaseException | None = None
    ) -> None:
        """End a job (any thread holding no engine lock): free its slot, settle its status and wake its
        consumer."""
        if error is not None and cause is not None:
            error.__cause__ = cause
        with self._cond:
            if job.slot is not None and self._active.get(job.slot) is job:
                del self._active[job.slot]
                self._session.free(job.slot)
            with job.lock:
                if job.done:
                    return
                job.status, job.error = status, error if status == "failed" else None
            self._counters.requests[status] += 1
            if job.first_frames_at is None and job.frames:
                job.first_frames_at = time.monotonic()
            if job.first_chunk_at is None and status == "completed" and job.frames:
                self._counters.ttfa.append(job.time_to_first_audio())
                job.ttfa_recorded = True
            self._cond.notify_all()
        if status == "completed":
            self._deliver(job)
        else:  # a cancelled request's unread chunks are dropped; a failed one's are delivered, then the error
            job.mailbox.close(error, discard=status == "cancelled")
        job.finished.set()

    def _fail_all(self, error: BaseException) -> None:
        with self._cond:
            jobs = list(self._queue) + list(self._active.values())
            self._queue.clear()
        for job in jobs:
            failure = error if isinstance(error, EngineClosedError) else RequestFailedError(repr(error))
            self._finish(job, "failed", failure, cause=None if failure is error else error)

    # ------------------------------------------------------------------------------------------------
    # Streaming
    # ------------------------------------------------------------------------------------------------

    def _deliver(self, job: _Job) -> None:
        """New frames (or the end) for a job's stream: frames are cut into chunks here; audio is decoded by
        the audio thread once the consumer iterates."""
        if job.request.output == "frames":
            self._pump(job)
        elif job.streaming:
            self._audio.notify(job)

    def _start_streaming(self, job: _Job) -> None:
        job.streaming = True
        if job.request.output == "audio":
            if self._audio.alive:
                self._audio.notify(job)
            else:  # the engine is gone: decode what there is in the consumer's thread
                self._pump(job)

    def _pump(self, job: _Job) -> None:
        """Put every complete chunk of the job's frames into its mailbox (and close it after the last)."""
        with job.stream_lock:
            while True:
                with job.lock:
                    available, completed = len(job.frames), job.status == "completed"
                    span = job.chunker.next_span(available, completed)
                    frames = job.frames[span[0] : span[1]] if span else None
                if span is None:
                    break
                codes = torch.stack(frames, dim=1)
                if job.request.output == "audio":
                    if job.audio_decoder is None:
                        job.audio_decoder = self.processor.codec.streaming_decoder(batch_size=1)
                    chunk = job.audio_decoder.decode_chunk(codes[None])[0, 0].to("cpu", torch.float32).numpy()
                else:
                    chunk = codes
                if job.first_chunk_at is None:
                    job.first_chunk_at = time.monotonic()
                    if not job.ttfa_recorded:
                        job.ttfa_recorded = True
                        with self._cond:
                            self._counters.ttfa.append(job.time_to_first_audio())
                job.mailbox.put(chunk)
            if completed and job.chunker.emitted == available:
                job.mailbox.close()

    def _cancel(self, job: _Job, failure: BaseException | None = None) -> bool:
        """Cancel (or, with ``failure``, fail) a job from any thread: a queued job ends here, a running one
        at the decode thread's next frame boundary (only that thread frees slots)."""
        with self._cond:
            if not job.request_cancel(failure):
                return False
            queued = job in self._queue
            if queued:
                self._queue.remove(job)
            self._cond.notify_all()
        if queued:
            if failure is not None:
                self._finish(job, "failed", failure)
            else:
                self._finish(job, "cancelled", RequestCancelledError(f"request {job.id} was cancelled"))
        return True

    # ------------------------------------------------------------------------------------------------

    def _count(self, status: str) -> None:
        with self._cond:
            self._counters.requests[status] += 1

    def _prune_recent(self, now: float) -> None:
        recent = self._counters.recent_frames
        while recent and recent[0][0] < now - METRICS_WINDOW_SECONDS:
            recent.popleft()


class _AudioWorker:
    """The thread that decodes streamed audio, one request's pending chunks at a time: requests whose first
    chunk is not out yet go first (in arrival order), since that chunk sets their time to first audio and is
    short; then the others, FIFO."""

    def __init__(self, engine: FishS2Engine) -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fish-s2-engine-audio", daemon=True)
        self._thread.start()

    def notify(self, job: _Job) -> None:
        with self._cond:
            if job not in self._pending:
                if job.first_chunk_at is None:
                    pending = self._pending
                    index = next(
                        (i for i, other in enumerate(pending) if other.first_chunk_at is not None),
                        len(pending),
                    )
                    pending.insert(index, job)
                else:
                    self._pending.append(job)
                self._cond.notify()

    def stop(self) -> None:
        """Finish the pending work, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                job = self._pending.popleft()
            try:
                self._engine._pump(job)
            except Exception as err:
                logger.exception(f"FishS2Engine: decoding the audio of request {job.id} failed")
                failure = RequestFailedError(f"decoding the audio of request {job.id} failed: {err!r}")
                failure.__cause__ = err
                self._engine._cancel(job, failure)
                job.mailbox.close(failure)
