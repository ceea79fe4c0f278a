"""Training examples: a clip and its transcript become ``input_ids``, ``audio_codes``, ``attention_mask``, ``labels``.

Layout of one example (the generation prompt the processor builds, then the clip as the assistant's answer)::

    <|im_start|>system\\n ... <|im_end|>\\n <|im_start|>user\\n text <|im_end|>\\n <|im_start|>assistant\\n<|voice|>
    | <|semantic:c0|> x T (codes in the codebook rows) | <|im_end|> \\n
    labels: -100 over the prompt except <|voice|>; the semantic ids, <|im_end|> and \\n are labelled.

This is the authors' fine-tuning layout (the assistant turn is labelled from ``<|voice|>`` to the final
newline, everything before it is masked); the model shifts ``labels`` inside, like any causal LM, and takes the
fast-AR targets from ``audio_codes`` at the labelled semantic positions. The prompt text is the one
``generate`` is driven with (``FishS2Processor.__call__``), so an adapter learns the context it will see.

Every input is checked before any clip is encoded, so bad data fails before training starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..processing import audio as audio_io
from ..processing.markup import validate_text
from ..processing.prompt import IM_END

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of positions that carry no loss (``torch.nn.functional.cross_entropy``'s default ``ignore_index``)."""

Example = dict[str, torch.Tensor]


def load_clip(
    processor, audio: audio_io.AudioSource, sampling_rate: int | None = None, *, name: str = "audio"
) -> np.ndarray:
    """A training clip as a mono float32 waveform at the codec's rate, at least one codec frame long.

    Audio at another rate is resampled, with a log line (a whole data set at the wrong rate is worth knowing
    about); a clip shorter than one frame has no codes to learn from and is an error.
    """
    target_rate = processor.sampling_rate
    if isinstance(audio, (str, os.PathLike, bytes)):
        data, file_rate = audio_io.read_audio(audio, name=name)
        if sampling_rate is not None and sampling_rate != file_rate:
            raise ValueError(
                f"{name}: sampling_rate={sampling_rate} was given but the file is at {file_rate} Hz"
            )
        audio, sampling_rate = data, file_rate
    if sampling_rate is not None and sampling_rate != target_rate:
        logger.info("%s: resampling from %d Hz to %d Hz", name, sampling_rate, target_rate)
    waveform = audio_io.load_audio(audio, sampling_rate, target_rate=target_rate, name=name)
    frame_length = processor.codec.config.frame_length
    if len(waveform) < frame_length:
        raise ValueError(
            f"{name} is {len(waveform)} samples long at {target_rate} Hz, shorter than one codec frame "
            f"({frame_length} samples); it has no audio frame to train on"
        )
    return waveform


class ClipEncoder:
    """Waveforms → codes ``[num_codebooks, T]`` with the processor's codec (no cache: each clip is seen once)."""

    def __init__(self, processor):
        if processor.codec is None:
            raise ValueError("the processor has no codec to encode training clips; load it with its codec")
        self._encode = audio_io.ReferenceEncoder(processor.codec, max_entries=0)

    def __call__(self, waveform: np.ndarray) -> torch.Tensor:
        return self._encode(waveform)


def build_training_example(
    processor,
    text: str,
    codes: torch.Tensor | np.ndarray,
    *,
    references: Sequence[dict] | dict | None = None,
    allow_control_tokens: bool = False,
) -> Example:
    """One training example (see the module docstring) from a transcript and the clip's codes ``[C, T]``.

    ``text`` may carry speaker tags and inline ``[tags]``; ``references`` (as for the processor) put a voice
    in the system prompt for cloning fine-tunes. Raises ValueError naming the argument for a bad text or
    reference, codes of the wrong shape or range, or an example longer than the model context.
    """
    prompt = processor(text=text, references=references, allow_control_tokens=allow_control_tokens)
    encoder = processor.prompt_encoder
    codes = encoder.check_codes(codes, name="codes", residual_size=processor.codebook_size)
    target_ids, target_codes = encoder.encode([codes, f"{IM_END}\n"])
    prompt_ids, prompt_codes = prompt["input_ids"][0], prompt["audio_codes"][0]
    input_ids = torch.cat([prompt_ids, target_ids])
    if processor.max_length is not None and len(input_ids) > processor.max_length:
        raise ValueError(
            f"the training example is {len(input_ids)} tokens but the model context is {processor.max_length} "
            f"(max_length); use a shorter clip ({codes.shape[1]} frames) or text"
        )
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[len(prompt_ids) - 1 :] = input_ids[len(prompt_ids) - 1 :]  # from <|voice|> on, as the authors
    return {
        "input_ids": input_ids,
        "audio_codes": torch.cat([prompt_codes, target_codes], dim=1),
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }


def prepare_examples(
    processor,
    texts: Sequence[str],
    audios: Sequence[audio_io.AudioSource],
    *,
    sampling_rate: int | None = None,
    references: Sequence[dict] | dict | None = None,
    allow_control_tokens: bool = False,
    names: Sequence[str] | None = None,
) -> list[Example]:
    """Training examples for parallel lists of transcripts and clips (paths, file bytes or arrays).

    All transcripts are checked first, then every clip is read and checked, and only then encoded, so a bad
    item anywhere fails before the codec runs. ``sampling_rate`` applies to array clips; ``references`` is
    shared by every example. Errors call item ``i`` ``texts[i]``/``audios[i]``, or ``names[i]`` when given
    (e.g. the clip's file name).
    """
    texts, audios = _as_list(texts, "texts"), _as_list(audios, "audios")
    if len(texts) != len(audios):
        raise ValueError(
            f"texts has {len(texts)} items but audios has {len(audios)}; give one transcript per clip"
        )
    if not texts:
        raise ValueError("the training set is empty: give at least one (transcript, clip) pair")
    if names is not None and len(names) != len(texts):
        raise ValueError(f"names has {len(names)} items for {len(texts)} examples")
    text_names = (
        [f"texts[{i}]" for i in range(len(texts))] if names is None else [f"{n} (transcript)" for n in names]
    )
    audio_names = [f"audios[{i}]" for i in range(len(texts))] if names is None else list(names)
    encode = ClipEncoder(processor)
    reserved = processor.prompt_encoder.reserved
    for text, name in zip(texts, text_names):
        validate_text(text, name=name, reserved=reserved, allow_control_tokens=allow_control_tokens)
    waveforms = [
        load_clip(processor, audio, sampling_rate, name=name) for audio, name in zip(audios, audio_names)
    ]
    examples = []
    for text, waveform, name in zip(texts, waveforms, audio_names):
        try:
            examples.append(
                build_training_example(
                    processor,
                    text,
                    encode(waveform),
                    references=references,
                    allow_control_tokens=allow_control_tokens,
                )
            )
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return examples


class DatasetMapper:
    """``datasets.Dataset.map`` function: rows with ``text`` and ``audio`` become training examples, so the codec
    runs once per clip, not once per epoch::

        raw = raw.cast_column("audio", datasets.Audio(decode=False))   # {"path", "bytes"}: read by us
        train = raw.map(DatasetMapper(processor), remove_columns=raw.column_names)
        train.save_to_disk("encoded")      # later runs: datasets.load_from_disk("encoded")

    ``audio`` may be a path, ``{"path", "bytes"}`` (``Audio(decode=False)``) or ``{"array", "sampling_rate"}``.
    """

    def __init__(self, processor, *, text_column: str = "text", audio_column: str = "audio"):
        self.processor = processor
        self.text_column, self.audio_column = text_column, audio_column
        self._encode = ClipEncoder(processor)

    def __call__(self, row: dict[str, Any]) -> dict[str, list]:
        audio, rate = row[self.audio_column], None
        if isinstance(audio, dict) and "array" in audio:
            audio, rate = np.asarray(audio["array"], dtype=np.float32), audio["sampling_rate"]
        elif isinstance(audio, dict):
            audio = audio.get("bytes") or audio.get("path")
        waveform = load_clip(self.processor, audio, rate, name=self.audio_column)
        example = build_training_example(self.processor, row[self.text_column], self._encode(waveform))
        return {key: value.tolist() for key, value in example.items()}


def _as_list(items: object, name: str) -> list:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"{name} must be a list, got {type(items).__name__}")
    return list(items)
