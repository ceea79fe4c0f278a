"""Streaming audio out of ``generate``: frames in, waveform chunks out, through the codec's causal decoder."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import torch
from transformers.generation.streamers import BaseStreamer

_END = object()


class StreamCancelled(Exception):
    """Raised in the generating thread by :meth:`FishS2AudioStreamer.put` after :meth:`~FishS2AudioStreamer.cancel`:
    it stops ``generate`` between two frames."""


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def end_stream(streamer: BaseStreamer, error: BaseException | None = None) -> None:
    """End ``streamer`` after a generation that raised ``error``: a streamer with ``fail`` hands the error on to
    its consumer, any other is ended, so a consumer's ``for chunk in streamer`` loop never waits forever. An
    object that is no streamer at all (the error may be about just that) is left alone."""
    fail, end = getattr(streamer, "fail", None), getattr(streamer, "end", None)
    if error is not None and callable(fail):
        fail(error)
    elif callable(end):
        end()


class FishS2AudioStreamer(BaseStreamer):
    """Receives frames from :meth:`FishS2ForConditionalGeneration.generate` and yields audio chunks.

    ``generate`` calls :meth:`put` with each kept frame's codes ``[1, num_codebooks, 1]`` as soon as it is made,
    then :meth:`end`. Iterating the streamer (usually from another thread than the one generating) yields
    1-D float32 CPU waveforms at the codec's sampling rate: the first after ``first_chunk_frames`` frames
    (low time-to-first-audio), then one per ``chunk_frames`` frames, then the remainder. Chunks are decoded
    by the codec's streaming decoder, so their concatenation equals decoding all frames at once, and the
    decoding runs in the consuming thread, not in the generation loop::

        streamer = FishS2AudioStreamer(processor.codec, first_chunk_frames=5)
        thread = threading.Thread(target=model.generate, kwargs={**inputs, "streamer": streamer})
        thread.start()
        for chunk in streamer:
            play(chunk)

    When ``generate`` fails, the loop raises its error (:meth:`fail`) instead of waiting for frames that never
    come. :meth:`cancel` stops the generation between two frames (for Ctrl-C, a client that went away). A streamer
    serves one ``generate`` (or ``generate_long``) call: after :meth:`end`, :meth:`put` refuses more frames.

    Args:
        codec: a ``FishS2CodecModel`` (or a processor holding one as ``.codec``).
        first_chunk_frames: frames in the first chunk (one frame is 2048 samples, ~46 ms at 44.1 kHz).
        chunk_frames: frames in each later chunk.
        timeout: seconds to wait for the next frame before raising ``queue.Empty`` (None waits forever).
    """

    def __init__(
        self, codec, *, first_chunk_frames: int = 5, chunk_frames: int = 20, timeout: float | None = None
    ):
        codec = getattr(codec, "codec", codec)
        if codec is None or not hasattr(codec, "streaming_decoder"):
            raise ValueError(
                "FishS2AudioStreamer needs a FishS2CodecModel (or a processor loaded with its codec), got "
                f"{type(codec).__name__}"
            )
        for name, value in (("first_chunk_frames", first_chunk_frames), ("chunk_frames", chunk_frames)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.codec = codec
        self.first_chunk_frames = first_chunk_frames
        self.chunk_frames = chunk_frames
        self.timeout = timeout
        self._decoder = codec.streaming_decoder(batch_size=1)
        self._incoming: queue.Queue = queue.Queue()
        self._pending: list[torch.Tensor] = []  # received, not yet decoded frames (each [1, C, t])
        self._failure: _Failure | None = None  # raised by the iterator once the frames before it are out
        self._ended = False  # the consumer has seen the end
        self._closed = False  # the producer has ended the stream
        self._cancelled = threading.Event()
        self.chunks_emitted = 0

    def put(self, value: torch.Tensor) -> None:
        """Queue the codes ``[1, num_codebooks, t]`` of newly generated frames.

        Raises :class:`StreamCancelled` after :meth:`cancel`, and ``RuntimeError`` after :meth:`end` (a streamer
        reused for a second call would continue the first call's audio).
        """
        if self._cancelled.is_set():
            raise StreamCancelled("the consumer cancelled this stream")
        if self._closed:
            raise RuntimeError(
                "this FishS2AudioStreamer has already ended; use a new streamer for each generate() call"
            )
        if value.dim() != 3 or value.shape[0] != 1:
            raise ValueError(f"expected codes of shape [1, num_codebooks, frames], got {tuple(value.shape)}")
        self._incoming.put(value.detach().to("cpu"))

    def end(self) -> None:
        """No more frames: the iterator yields what is left, then stops."""
        self._close(_END)

    def fail(self, error: BaseException) -> None:
        """The generation failed: the iterator yields what is left, then raises ``error``."""
        self._close(_Failure(error))

    def cancel(self) -> None:
        """Ask the generation to stop: its next :meth:`put` raises :class:`StreamCancelled` (safe from any thread)."""
        self._cancelled.set()

    def _close(self, marker: object) -> None:
        if not self._closed:  # generate_long and generate may both report one failure
            self._closed = True
            self._incoming.put(marker)

    def __iter__(self) -> FishS2AudioStreamer:
        return self

    def __next__(self) -> torch.Tensor:
        wanted = self.first_chunk_frames if self.chunks_emitted == 0 else self.chunk_frames
        while not self._ended and self._pending_frames() < wanted:
            item = self._incoming.get(timeout=self.timeout)
            if item is _END or isinstance(item, _Failure):
                self._ended = True
                self._failure = item if isinstance(item, _Failure) else None
            else:
                self._pending.append(item)
        if not self._pending:
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure.error
            raise StopIteration
        codes = torch.cat(self._pending, dim=-1)
        chunk, rest = codes[..., :wanted], codes[..., wanted:]
        self._pending = [rest] if rest.shape[-1] else []
        audio = self._decoder.decode_chunk(chunk)
        self.chunks_emitted += 1
        return audio[0, 0].to("cpu", torch.float32)

    def _pending_frames(self) -> int:
        return sum(codes.shape[-1] for codes in self._pending)
