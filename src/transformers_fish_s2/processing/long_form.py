"""Long and multi-speaker text: generate chunk by chunk, each chunk conditioned on the ones before it.

This needs the processor (to split the text and build each chunk's prompt) and the model (to generate), so
it lives on the processing side: the model package never imports the processor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig
from transformers.generation.streamers import BaseStreamer

from ..modeling.audio_streamer import end_stream
from ..modeling.generation_fish_s2 import FishS2GenerateOutput

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


def generate_long(
    model: FishS2ForConditionalGeneration,
    processor: FishS2Processor,
    text: str,
    references: list[dict] | dict | None = None,
    *,
    chunk_length: int | None = None,
    generation_config: GenerationConfig | None = None,
    streamer: BaseStreamer | None = None,
    **kwargs,
) -> FishS2GenerateOutput:
    """Generate long or multi-speaker text chunk by chunk with iterative conditioning.

    ``processor.chunk_text`` splits ``text`` into speaker-turn chunks; each chunk is generated from a prompt
    holding the references and every earlier chunk's text and generated codes (``processor.conversation``),
    like the authors' ``generate_long``. Returns the chunks' codes concatenated as one row
    (``sequences [1, num_codebooks, N]``); ``eos_reached`` is True when every chunk ended with ``<|im_end|>``.
    A ``streamer`` receives the frames of all chunks, then one ``end()`` (or, when a chunk fails, ``fail(error)``
    if it has one, else ``end()``). Keyword arguments are passed to
    ``model.generate`` for every chunk. The model's generation lock is held for all chunks, so the chunks of
    one text are not interleaved with other threads' calls.
    """
    kwargs.pop("return_dict_in_generate", None)  # always a FishS2GenerateOutput here
    try:
        output = _generate_chunks(
            model, processor, text, references, chunk_length, generation_config, streamer, kwargs
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
    chunk_length: int | None,
    generation_config: GenerationConfig | None,
    streamer: BaseStreamer | None,
    kwargs: dict,
) -> FishS2GenerateOutput:
    with model.generation_lock():
        conversation = processor.conversation(references)
        chunk_streamer = _ForwardWithoutEnd(streamer) if streamer is not None else None
        pieces, all_ended = [], True
        for chunk in processor.chunk_text(text, chunk_length=chunk_length):
            input_ids, audio_codes = conversation.prompt_for(chunk)
            output = model.generate(
                input_ids[None].to(model.device),
                audio_codes[None].to(model.device),
                generation_config=generation_config,
                streamer=chunk_streamer,
                return_dict_in_generate=True,
                **kwargs,
            )
            codes = output.sequences[0, :, : int(output.lengths[0])]
            conversation.append_generated(chunk, codes.cpu())
            pieces.append(codes)
            all_ended &= bool(output.eos_reached[0])
    codes = torch.cat(pieces, dim=1)
    return FishS2GenerateOutput(
        sequences=codes[None],
        lengths=torch.tensor([codes.shape[1]], device=codes.device),
        eos_reached=torch.tensor([all_ended], device=codes.device),
    )
