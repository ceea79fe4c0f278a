"""Long and multi-speaker text: generate chunk by chunk, each chunk conditioned on the ones before it.

This needs the processor (to split the text and build each chunk's prompt) and the model (to generate), so
it lives on the processing side: the model package never imports the processor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig
from transformers.generation.streamers import BaseStreamer

from ..modeling.audio_streamer import end_stream
from ..modeling.generation_fish_s2 import FishS2GenerateOutput
from ..modeling.generation_options import FISH_S2_GENERATION_DEFAULTS

if TYPE_CHECKING:
    from ..modeling import FishS2ForConditionalGeneration
    from .processing_fish_s2 import FishS2Processor


class _ForwardWithoutEnd(BaseStreamer):
    """Passes frames on but keeps the stream open, so several generate calls feed one streamer."""

    def __init__(self, streamer: BaseStreamer):
        self.streamer = streamer

    def put(self, value: torch.Tensor) -> None:
        self.streamer.put(value)

    def end(self) -> None:
        pass  # also when a chunk fails: generate_long ends the real streamer, once


ChunkCallback = Callable[[int, int, torch.Tensor], None]
"""``on_chunk(index, num_chunks, codes)``: called after chunk ``index`` (0-based) with its codes."""


def generate_long(
    model: FishS2ForConditionalGeneration,
    processor: FishS2Processor,
    text: str,
    references: list[dict] | dict | None = None,
    *,
    chunk_length: int | None = None,
    split_sentences: bool = False,
    generation_config: GenerationConfig | None = None,
    streamer: BaseStreamer | None = None,
    on_chunk: ChunkCallback | None = None,
    **kwargs,
) -> FishS2GenerateOutput:
    """Generate long or multi-speaker text chunk by chunk with iterative conditioning.

    ``processor.chunk_text`` splits ``text`` into speaker-turn chunks (and, with ``split_sentences``, a text
    without speaker tags into sentence chunks of at most ``chunk_length`` bytes). Each chunk is generated from
    a prompt holding the references and the earlier chunks' text and generated codes
    (``processor.conversation``), like the authors' ``generate_long``; the history is rolled (oldest chunks
    dropped, references kept) so that every prompt leaves room for ``max_new_tokens`` frames in the context.

    Returns the chunks' codes concatenated as one row (``sequences [1, num_codebooks, N]``); ``eos_reached``
    is True when every chunk ended with ``<|im_end|>``. A ``streamer`` receives the frames of all chunks, then
    one ``end()`` (or, when a chunk fails, ``fail(error)`` if it has one, else ``end()``); ``on_chunk`` is
    called after each chunk. Keyword arguments are passed to ``model.generate`` for every chunk. Every chunk's
    text is checked before the first is generated. When a chunk fails, the exception carries the chunks
    finished before it as ``error.partial_output`` (a ``FishS2GenerateOutput``, or ``None`` when none
    finished), so their audio is not lost. The model's generation lock is held for all chunks, so the chunks
    of one text are not interleaved with other threads' calls.
    """
    kwargs.pop("return_dict_in_generate", None)  # always a FishS2GenerateOutput here
    chunking = {"chunk_length": chunk_length, "split_sentences": split_sentences}
    try:
        output = _generate_chunks(
            model, processor, text, references, chunking, generation_config, streamer, on_chunk, kwargs
        )
    except BaseException as error:  # a chunk's prompt or generate: the consumer must not wait forever
        if streamer is not None:
            end_stream(streamer, error)
        raise
    if streamer is not None:
        streamer.end()
    return output


def _generate_chunks(
    model: FishS2ForConditionalGeneration,
    processor: FishS2Processor,
    text: str,
    references: list[dict] | dict | None,
    chunking: dict,
    generation_config: GenerationConfig | None,
    streamer: BaseStreamer | None,
    on_chunk: ChunkCallback | None,
    kwargs: dict,
) -> FishS2GenerateOutput:
    reserve = (
        kwargs.get("max_new_tokens")
        or getattr(generation_config, "max_new_tokens", None)
        or model.generation_config.max_new_tokens
        or FISH_S2_GENERATION_DEFAULTS["max_new_tokens"]
    )
    with model.generation_lock():
        conversation = processor.conversation(references)
        context = model.config.text_config.max_seq_len
        conversation.max_length = min(conversation.max_length or context, context)
        chunks = processor.chunk_text(text, **chunking)
        for chunk in chunks:
            conversation.check_text(chunk)
        chunk_streamer = _ForwardWithoutEnd(streamer) if streamer is not None else None
        pieces, all_ended = [], True
        for index, chunk in enumerate(chunks):
            try:
                input_ids, audio_codes = conversation.prompt_for(chunk, reserve=reserve)
                output = model.generate(
                    input_ids[None].to(model.device),
                    audio_codes[None].to(model.device),
                    generation_config=generation_config,
                    streamer=chunk_streamer,
                    return_dict_in_generate=True,
                    **kwargs,
                )
            except BaseException as error:
                error.partial_output = _joined(pieces, all_ended) if pieces else None
                if pieces and hasattr(error, "add_note"):  # Python >= 3.11
                    error.add_note(f"chunks 1-{index} of {len(chunks)} finished: see error.partial_output")
                raise
            codes = output.sequences[0, :, : int(output.lengths[0])]
            conversation.append_generated(chunk, codes.cpu())
            pieces.append(codes)
            all_ended &= bool(output.eos_reached[0])
            if on_chunk is not None:
                on_chunk(index, len(chunks), codes)
    return _joined(pieces, all_ended)


def _joined(pieces: list[torch.Tensor], all_ended: bool) -> FishS2GenerateOutput:
    codes = torch.cat(pieces, dim=1)
    return FishS2GenerateOutput(
        sequences=codes[None],
        lengths=torch.tensor([codes.shape[1]], device=codes.device),
        eos_reached=torch.tensor([all_ended], device=codes.device),
    )
