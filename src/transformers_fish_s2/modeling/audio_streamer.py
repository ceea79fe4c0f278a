"""Streaming audio out of ``generate``: frames in, waveform chunks out, through the codec's causal decoder."""

from __future__ import annotations

import queue

import torch
from transformers.generation.streamers import BaseStreamer

_END = object()


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
        self._ended = False
        self.chunks_emitted = 0

    def put(self, value: torch.Tensor) -> None:
        """Queue the codes ``[1, num_codebooks, t]`` of newly generated frames."""
        if value.dim() != 3 or value.shape[0] != 1:
            raise ValueError(f"expected codes of shape [1, num_codebooks, frames], got {tuple(value.shape)}")
        self._incoming.put(value.detach().to("cpu"))

    def end(self) -> None:
        """No more frames: the iterator yields what is left, then stops."""
        self._incoming.put(_END)

    def __iter__(self) -> FishS2AudioStreamer:
        return self

    def __next__(self) -> torch.Tensor:
        wanted = self.first_chunk_frames if self.chunks_emitted == 0 else self.chunk_frames
        while not self._ended and self._pending_frames() < wanted:
            item = self._incoming.get(timeout=self.timeout)
            if item is _END:
                self._ended = True
            else:
                self._pending.append(item)
        if not self._pending:
            raise StopIteration
        codes = torch.cat(self._pending, dim=-1)
        chunk, rest = codes[..., :wanted], codes[..., wanted:]
        self._pending = [rest] if rest.shape[-1] else []
        audio = self._decoder.decode_chunk(chunk)
        self.chunks_emitted += 1
        return audio[0, 0].to("cpu", torch.float32)

    def _pending_frames(self) -> int:
        return sum(codes.shape[-1] for codes in self._pending)
