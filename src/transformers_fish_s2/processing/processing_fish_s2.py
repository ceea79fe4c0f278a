"""``FishS2Processor``: tokenizer + markup + chat prompt + codec (the model itself only sees ids and codes).

Text and reference voices go in, model inputs come out (``input_ids``, ``audio_codes``,
``attention_mask``); generated codes go in, 44.1 kHz waveforms come out. The model itself never sees
text markup or audio.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.utils import cached_file

from ..checkpoint import record_pipeline_processor_error, require_file
from ..codec import FishS2CodecModel
from ..validation import HUB_KWARGS
from . import audio as audio_io
from .markup import (
    DEFAULT_CHUNK_LENGTH,
    DEFAULT_MAX_TURNS,
    SPEAKER_TAG,
    Markup,
    parse_markup,
    validate_text,
)
from .markup import chunk_text as split_into_chunks
from .prompt import FishS2Conversation, PromptEncoder
from .sentences import sentence_chunks

logger = logging.getLogger(__name__)

CODEC_SUBFOLDER = "codec"
OFFICIAL_CODEC_FILE = "codec.pth"
_HUB_KWARGS = (*HUB_KWARGS, "subfolder")
_REFERENCE_KEYS = frozenset({"text", "audio", "codes", "sampling_rate"})

Reference = dict[str, Any]


@dataclass(frozen=True)
class AudioFormat:
    """What the text-to-speech pipeline reads from ``processor.feature_extractor``: the output rate."""

    sampling_rate: int


class FishS2Processor(ProcessorMixin):
    r"""Processor for Fish Audio S2: builds the authors' prompts and encodes/decodes audio.

    Args:
        tokenizer: the S2 tokenizer (Qwen3 BPE + control and ``<|semantic:N|>`` tokens).
        codec: the codec (``FishS2CodecModel``) used to encode reference audio and decode generated codes;
            optional if references are given as codes and nothing is decoded.
        max_length: the model context in tokens; longer prompts are rejected (read from the model's
            ``config.json`` by ``from_pretrained``). ``None`` disables the check.
        num_codebooks: codebooks per audio frame (taken from the codec when there is one).
        codebook_size: entries of each residual codebook, for checking reference codes (taken from the
            codec when there is one; defaults to the semantic vocabulary size, the model's range).
        chunk_length: default UTF-8 byte budget of :meth:`chunk_text` (the authors' CLI uses 300).
        reference_cache_size: how many encoded reference voices to keep (LRU, keyed by content hash).
    """

    def __init__(
        self,
        tokenizer,
        codec: FishS2CodecModel | None = None,
        *,
        max_length: int | None = None,
        num_codebooks: int = 10,
        codebook_size: int | None = None,
        chunk_length: int = DEFAULT_CHUNK_LENGTH,
        reference_cache_size: int = 32,
    ):
        super().__init__(tokenizer)
        if codec is not None:
            num_codebooks = codec.config.num_codebooks
            codebook_size = codec.config.codebook_size
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; S2 tokenizers define <|pad|> for left padding")
        self.max_length = max_length
        self.num_codebooks = num_codebooks
        self.chunk_length = chunk_length
        self.reference_cache_size = reference_cache_size
        self.prompt_encoder = PromptEncoder(tokenizer, num_codebooks)
        self.codebook_size = codebook_size or self.prompt_encoder.semantic_vocab_size
        self.codec = codec

    # ------------------------------------------------------------------------------------------------
    # Codec and audio format
    # ------------------------------------------------------------------------------------------------

    @property
    def codec(self) -> FishS2CodecModel | None:
        return self._codec

    @codec.setter
    def codec(self, codec: FishS2CodecModel | None) -> None:
        if codec is not None:
            semantic = codec.config.semantic_codebook_size
            if semantic != self.prompt_encoder.semantic_vocab_size:
                raise ValueError(
                    f"the codec's semantic codebook has {semantic} entries but the tokenizer has "
                    f"{self.prompt_encoder.semantic_vocab_size} <|semantic:N|> tokens; they must match"
                )
            if codec.config.num_codebooks != self.num_codebooks:
                raise ValueError(
                    f"the codec has {codec.config.num_codebooks} codebooks, the processor expects {self.num_codebooks}"
                )
        self._codec = codec
        self._reference_encoder = (
            audio_io.ReferenceEncoder(codec, self.reference_cache_size) if codec is not None else None
        )

    @property
    def sampling_rate(self) -> int:
        """Rate of the audio the codec consumes and produces (44.1 kHz)."""
        return self._codec.config.sampling_rate if self._codec is not None else audio_io.SAMPLING_RATE

    @property
    def feature_extractor(self) -> AudioFormat:
        """Where ``pipeline("text-to-speech")`` looks for the output ``sampling_rate``."""
        return AudioFormat(self.sampling_rate)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "audio_codes", "attention_mask"]

    # ------------------------------------------------------------------------------------------------
    # Text → model inputs
    # ------------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str],
        references: Reference | Sequence[Reference] | Sequence[Sequence[Reference] | None] | None = None,
        *,
        audio: object = None,
        sampling_rate: int | None = None,
        reference_text: str | Sequence[str] | None = None,
        return_tensors: str = "pt",
        allow_control_tokens: bool = False,
        **kwargs,
    ) -> BatchFeature:
        """Build generation prompts.

        Args:
            text: one text or a batch. Speaker turns (``<|speaker:N|>``) are laid out as the reference lays
                out one chunk; use :meth:`chunk_text` + :meth:`conversation` for the reference's
                chunk-by-chunk generation of long dialogue.
            references: reference voices, each ``{"text": transcript, "audio": path | bytes | array | tensor,
                "sampling_rate": int}`` (rate only for arrays) or ``{"text": transcript, "codes": [C, T]}``.
                A list of references is shared by the whole batch; a list of lists (or ``None``) gives one
                entry per batch item.
            audio, sampling_rate, reference_text: the transformers form of ``references``: one reference clip or a
                list (paths, bytes, arrays at ``sampling_rate``, or ``datasets`` audio dicts), with
                ``reference_text`` the transcript of each, in order; shared by the whole batch.
            return_tensors: ``"pt"`` or ``"np"``.
            allow_control_tokens: accept reserved tokens such as ``<|im_end|>`` in the texts (they then act
                as control tokens; only for callers who build prompt structure on purpose).

        Returns:
            ``BatchFeature`` with ``input_ids [B, T]``, ``audio_codes [B, num_codebooks, T]`` (0 outside the
            reference audio) and ``attention_mask [B, T]``, left-padded with ``<|pad|>``.

        Raises:
            ValueError / TypeError naming the argument (``text[1]``, ``references[0]['codes']``, ...): empty or
            whitespace-only text, text that is not valid Unicode, a reserved token, a malformed speaker tag,
            a reference without transcript or without audio/codes, unreadable/empty/non-finite audio, codes
            of the wrong shape, dtype or range, a prompt that does not fit ``max_length``.
            FileNotFoundError naming the path of a missing reference file.
        """
        if kwargs:
            raise TypeError(f"FishS2Processor got unexpected keyword argument(s) {sorted(kwargs)}")
        if audio is not None or reference_text is not None:
            if references is not None:
                raise ValueError(
                    "give the reference voices either as references= or as audio= + reference_text="
                )
            references = _references_from_audio(audio, sampling_rate, reference_text)
        elif sampling_rate is not None:
            raise ValueError("sampling_rate describes audio=; there is no audio")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        texts, names = self._texts(text)
        for item, name in zip(texts, names):
            validate_text(
                item,
                name=name,
                reserved=self.prompt_encoder.reserved,
                allow_control_tokens=allow_control_tokens,
            )
        per_item = self._references_per_item(references, len(texts))
        encoded = self._encode_references(per_item, allow_control_tokens)

        prompts = []
        for i, (item, refs) in enumerate(zip(texts, encoded)):
            conversation = FishS2Conversation(
                self.prompt_encoder,
                refs,
                max_length=self.max_length,
                allow_control_tokens=allow_control_tokens,
            )
            try:
                prompts.append(conversation.prompt_for(item))
            except ValueError as error:
                raise ValueError(f"{names[i]}: {error}") from None
        return self._pad(prompts, return_tensors)

    def apply_chat_template(
        self,
        conversation: Sequence[dict] | Sequence[Sequence[dict]],
        *,
        tokenize: bool = False,
        return_dict: bool = False,
        add_generation_prompt: bool = True,
        return_tensors: str = "pt",
        processor_kwargs: dict | None = None,
        **kwargs,
    ) -> BatchFeature | torch.Tensor | np.ndarray | str | list[str]:
        """Build the prompt of a chat-style conversation (or a list of them), as CSM users and
        ``pipeline("text-to-speech")`` call it.

        Each turn is ``{"role": speaker id ("0", "1", ...), "content": str or [{"type": "text", "text": ...},
        {"type": "audio", "audio" or "path": clip, "sampling_rate": int}]}``. Turns with audio are reference clips
        of their speaker; the trailing text-only turns are spoken (:mod:`.chat`). There is no Jinja template: the
        turns become the ``references`` and ``text`` of :meth:`__call__`, whose options go in ``processor_kwargs``
        (or as keyword arguments).

        Returns, as transformers processors do: the :meth:`__call__` ``BatchFeature`` with ``tokenize=True,
        return_dict=True``; only its ``input_ids`` with ``tokenize=True``; the prompt as text (a list for a list of
        conversations) by default. ``add_generation_prompt`` is accepted for compatibility; S2 prompts always end
        with the assistant's voice header, ready to generate.
        """
        from .chat import chat_text_and_references, is_conversation

        if not isinstance(conversation, (list, tuple)):
            raise TypeError(
                "conversation must be a list of turns {'role': speaker id, 'content': ...} (or a list of such "
                f"lists), got {type(conversation).__name__}"
            )
        if not conversation:
            raise ValueError("conversation is an empty list; give at least one turn")
        batched = not is_conversation(conversation)
        conversations = list(conversation) if batched else [conversation]
        names = [f"conversation[{i}]" for i in range(len(conversations))] if batched else ["conversation"]
        requests = [chat_text_and_references(chat, name) for chat, name in zip(conversations, names)]
        texts = [text for text, _ in requests]
        inputs = self(
            texts if batched else texts[0],
            references=[references for _, references in requests],
            return_tensors=return_tensors,
            **{**(processor_kwargs or {}), **kwargs},
        )
        if tokenize:
            return inputs if return_dict else inputs["input_ids"]
        rows = zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist())
        prompts = self.tokenizer.batch_decode(
            [[t for t, kept in zip(ids, mask) if kept] for ids, mask in rows]
        )
        return prompts if batched else prompts[0]

    def chunk_text(
        self,
        text: str,
        *,
        chunk_length: int | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        split_sentences: bool = False,
    ) -> list[str]:
        """Split ``text`` into the chunks generated one after the other (long text in
        docs/reference-behaviour.md, long-form in docs/long-text.md).

        Speaker turns are grouped into chunks of at most ``max_turns`` turns and ``chunk_length`` UTF-8 bytes
        (default ``self.chunk_length``); text before the first speaker tag is dropped, as in the reference. A
        text without speaker tags is one chunk, as in the reference, unless ``split_sentences``: then it is
        cut into chunks of whole sentences of at most ``chunk_length`` bytes (:mod:`.sentences`).
        """
        validate_text(text)
        chunk_length = self.chunk_length if chunk_length is None else chunk_length
        if split_sentences and not SPEAKER_TAG.search(text):
            return sentence_chunks(text, chunk_length)
        return split_into_chunks(text, chunk_length=chunk_length, max_turns=max_turns)

    def parse_markup(self, text: str) -> Markup:
        """The speaker turns and inline ``[tags]`` of ``text``."""
        return parse_markup(validate_text(text, allow_control_tokens=True))

    def conversation(
        self, references: Sequence[Reference] | Reference | None = None, *, allow_control_tokens: bool = False
    ) -> FishS2Conversation:
        """A conversation for chunk-by-chunk generation, conditioned on ``references`` (encoded once)."""
        (refs,) = self._encode_references(self._references_per_item(references, 1), allow_control_tokens)
        return FishS2Conversation(
            self.prompt_encoder, refs, max_length=self.max_length, allow_control_tokens=allow_control_tokens
        )

    @staticmethod
    def _texts(text: str | Sequence[str]) -> tuple[list[str], list[str]]:
        if isinstance(text, str):
            return [text], ["text"]
        if isinstance(text, (list, tuple)):
            if not text:
                raise ValueError("text is an empty list; give at least one text")
            return list(text), [f"text[{i}]" for i in range(len(text))]
        raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")

    @staticmethod
    def _references_per_item(references, batch_size: int) -> list[list[Reference]]:
        """Normalise the accepted ``references`` forms to one list of references per batch item."""
        if references is None:
            return [[] for _ in range(batch_size)]
        if isinstance(references, dict):
            return [[references] for _ in range(batch_size)]
        if not isinstance(references, (list, tuple)):
            raise TypeError(
                f"references must be a dict, a list of dicts or a list of lists, got {type(references).__name__}"
            )
        if all(isinstance(r, dict) for r in references):
            return [list(references) for _ in range(batch_size)]
        if all(r is None or isinstance(r, (list, tuple)) for r in references):
            if len(references) != batch_size:
                raise ValueError(
                    f"references has one entry per batch item but {len(references)} entries for "
                    f"{batch_size} text(s)"
                )
            return [list(r or []) for r in references]
        raise TypeError(
            "references must be a list of dicts (shared) or a list of lists/None (one per text), not a mix"
        )

    def _encode_references(
        self, per_item: list[list[Reference]], allow_control_tokens: bool
    ) -> list[list[tuple[str, torch.Tensor]]]:
        """Validate every reference first, then read and encode the audio ones (cached by content)."""
        batched = len(per_item) > 1
        names = [
            [f"references[{i}][{j}]" if batched else f"references[{j}]" for j in range(len(refs))]
            for i, refs in enumerate(per_item)
        ]
        for refs, ref_names in zip(per_item, names):
            for reference, name in zip(refs, ref_names):
                self._check_reference(reference, name, allow_control_tokens)
            self._check_reference_lengths(refs, ref_names)
        encoded = []
        for refs, ref_names in zip(per_item, names):
            encoded.append(
                [(ref["text"], self._reference_codes(ref, name)) for ref, name in zip(refs, ref_names)]
            )
        return encoded

    def _check_reference(self, reference: object, name: str, allow_control_tokens: bool) -> None:
        if not isinstance(reference, dict):
            raise TypeError(
                f"{name} must be a dict with 'text' and 'audio' or 'codes', got {type(reference).__name__}"
            )
        unknown = set(reference) - _REFERENCE_KEYS
        if unknown:
            raise ValueError(
                f"{name} has unknown key(s) {sorted(unknown)}; expected {sorted(_REFERENCE_KEYS)}"
            )
        has_audio, has_codes = "audio" in reference, "codes" in reference
        if "text" not in reference:
            raise ValueError(f"{name} has no 'text': every reference needs the transcript of its audio")
        if not has_audio and not has_codes:
            raise ValueError(f"{name} has a transcript but no 'audio' or 'codes'")
        if has_audio and has_codes:
            raise ValueError(f"{name} has both 'audio' and 'codes'; give one of them")
        validate_text(
            reference["text"],
            name=f"{name}['text']",
            reserved=self.prompt_encoder.reserved,
            allow_control_tokens=allow_control_tokens,
        )
        if has_codes:
            if "sampling_rate" in reference:
                raise ValueError(f"{name}: 'sampling_rate' only applies to 'audio', not to 'codes'")
            self.prompt_encoder.check_codes(
                reference["codes"], name=f"{name}['codes']", residual_size=self.codebook_size
            )
        elif self._codec is None:
            raise ValueError(
                f"{name} gives audio but this processor has no codec to encode it; load the processor with "
                "its codec or give the reference as 'codes'"
            )

    def _check_reference_lengths(self, refs: list[Reference], names: list[str]) -> None:
        """Compare the frames the references will take in the prompt with the context before any of them is
        decoded, resampled or encoded (a 1 KB WAV whose header says 1 Hz is 500 s of audio: 74 s and 2.5 GB of
        work, only to fail on the prompt length). Audio lengths come from file headers or array sizes."""
        if self.max_length is None or self._codec is None:
            return
        frame_rate = self._codec.config.frame_rate
        frames = 0
        for reference, name in zip(refs, names):
            if "codes" in reference:
                frames += reference["codes"].shape[-1]
                continue
            seconds = audio_io.audio_seconds(reference["audio"], reference.get("sampling_rate"))
            if seconds is None:  # unreadable: load_audio says why
                continue
            frames += math.ceil(seconds * frame_rate)
            if frames >= self.max_length:
                raise ValueError(
                    f"{name}['audio'] is {seconds:.1f} s long; with the references before it that is {frames} audio frames, "
                    f"but the model context is {self.max_length} tokens (max_length): the references together "
                    f"must be shorter than {(self.max_length - 1) / frame_rate:.1f} s"
                )

    def _reference_codes(self, reference: Reference, name: str) -> torch.Tensor:
        if "codes" in reference:
            return self.prompt_encoder.check_codes(
                reference["codes"], name=f"{name}['codes']", residual_size=self.codebook_size
            )
        waveform = audio_io.load_audio(
            reference["audio"],
            reference.get("sampling_rate"),
            target_rate=self.sampling_rate,
            name=f"{name}['audio']",
        )
        return self._reference_encoder(waveform)

    def _pad(self, prompts: list[tuple[torch.Tensor, torch.Tensor]], return_tensors: str) -> BatchFeature:
        length = max(len(ids) for ids, _ in prompts)
        batch = len(prompts)
        input_ids = torch.full((batch, length), self.tokenizer.pad_token_id, dtype=torch.long)
        audio_codes = torch.zeros((batch, self.num_codebooks, length), dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for row, (ids, codes) in enumerate(prompts):
            input_ids[row, length - len(ids) :] = ids
            audio_codes[row, :, length - len(ids) :] = codes
            attention_mask[row, length - len(ids) :] = 1
        data = {"input_ids": input_ids, "audio_codes": audio_codes, "attention_mask": attention_mask}
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ------------------------------------------------------------------------------------------------
    # Codes → audio
    # ------------------------------------------------------------------------------------------------

    def decode(self, audio_codes, lengths=None, *, return_tensors: str = "pt") -> torch.Tensor | np.ndarray:
        """Decode one row of codes to one float32 mono waveform at :attr:`sampling_rate` (2048 samples per frame).

        ``audio_codes`` is ``[C, N]`` (``lengths`` may be an int), ``[1, C, N]``, or what ``generate`` returns for
        one prompt (``sequences`` cut to its ``lengths``). Several rows raise: :meth:`batch_decode` returns one
        waveform per row, so the result's type never depends on the batch size. Residual codes beyond the codec's
        codebooks (the model's fast AR is not masked to them) are clamped to the last entry, as in the reference.
        Returns a torch tensor on the CPU, or a numpy array with ``return_tensors="np"``.
        """
        audio_codes, lengths = _codes_and_lengths(audio_codes, lengths)
        if isinstance(audio_codes, np.ndarray):
            audio_codes = torch.from_numpy(audio_codes)
        if isinstance(audio_codes, torch.Tensor) and audio_codes.ndim == 2:
            audio_codes = audio_codes[None]
            lengths = [lengths] if isinstance(lengths, int) else lengths
        batched = isinstance(audio_codes, (list, tuple)) or (
            isinstance(audio_codes, torch.Tensor) and audio_codes.ndim == 3
        )
        if batched and (rows := len(audio_codes)) > 1:
            raise ValueError(
                f"decode() decodes one row, got {rows} rows; processor.batch_decode(...) returns one waveform per row"
            )
        (waveform,) = self.batch_decode(audio_codes, lengths, return_tensors=return_tensors)
        return waveform

    @torch.no_grad()
    def batch_decode(
        self, audio_codes, lengths=None, *, return_tensors: str = "pt"
    ) -> list[torch.Tensor] | list[np.ndarray]:
        """Decode ``[B, C, N]`` codes (or a list of ``[C, N_i]``, or what ``generate`` returns) to a list of B
        waveforms.

        Rows are decoded together and cut to ``lengths[b] * frame_length`` samples; the codec is causal, so
        padding frames after a row's end do not change its audio.
        """
        if self._codec is None:
            raise ValueError("this processor has no codec, so it cannot decode audio; load it with its codec")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        codes, lengths = self._decode_batch(*_codes_and_lengths(audio_codes, lengths))
        frame_length = self._codec.config.frame_length
        waveforms = self._codec.decode(codes).audio_values[:, 0].to("cpu", torch.float32)
        out = [waveforms[b, : int(n) * frame_length] for b, n in enumerate(lengths)]
        return [w.numpy() for w in out] if return_tensors == "np" else out

    def _decode_batch(self, audio_codes, lengths) -> tuple[torch.Tensor, list[int]]:
        """Validated ``[B, C, N]`` codes (zeroed after each row's length) and the row lengths."""
        if isinstance(audio_codes, (list, tuple)):
            if lengths is not None:
                raise ValueError(
                    "lengths is only for a [B, C, N] tensor; a list of codes carries its own lengths"
                )
            items = [
                self.prompt_encoder.check_codes(c, name=f"audio_codes[{i}]", allow_empty=True)
                for i, c in enumerate(audio_codes)
            ]
            if not items:
                raise ValueError("audio_codes is an empty list")
            lengths = [c.shape[1] for c in items]
            codes = torch.zeros(len(items), self.num_codebooks, max(lengths), dtype=torch.long)
            for i, c in enumerate(items):
                codes[i, :, : c.shape[1]] = c
            return codes, lengths
        if isinstance(audio_codes, np.ndarray):
            audio_codes = torch.from_numpy(audio_codes)
        if not isinstance(audio_codes, torch.Tensor) or audio_codes.ndim != 3:
            shape = list(audio_codes.shape) if hasattr(audio_codes, "shape") else type(audio_codes).__name__
            raise ValueError(
                f"audio_codes must be [{self.num_codebooks}, N] or [B, {self.num_codebooks}, N], got {shape}"
            )
        batch, _, frames = audio_codes.shape
        if lengths is None:
            lengths = [frames] * batch
        lengths = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
        if len(lengths) != batch or any(n < 0 or n > frames for n in lengths):
            raise ValueError(
                f"lengths must give one frame count in [0, {frames}] per row ({batch} rows), got {lengths}"
            )
        codes = torch.zeros(batch, self.num_codebooks, frames, dtype=torch.long)
        for b, n in enumerate(lengths):
            codes[b, :, :n] = self.prompt_encoder.check_codes(
                audio_codes[b, :, :n], name=f"audio_codes[{b}]", allow_empty=True
            )
        return codes, lengths

    def save_audio(self, audio: torch.Tensor | np.ndarray, path: str | os.PathLike) -> None:
        """Write one waveform at :attr:`sampling_rate`; WAV/FLAC/OGG/MP3 chosen by the file extension."""
        audio_io.save_audio(audio, path, self.sampling_rate)

    def save_decoded_audio(self, audio_codes: torch.Tensor | np.ndarray, path: str | os.PathLike) -> int:
        """Decode codes ``[num_codebooks, N]`` of any length straight into an audio file, a bounded chunk at a time
        (:meth:`decode` takes at most ``MAX_DECODE_FRAMES`` frames and holds the whole waveform). Written under a
        temporary name like :meth:`save_audio`; returns the number of samples written."""
        if self._codec is None:
            raise ValueError("this processor has no codec, so it cannot decode audio; load it with its codec")
        codes = self.prompt_encoder.check_codes(audio_codes, name="audio_codes", allow_empty=True)
        return audio_io.save_decoded_audio(self._codec, codes, path)

    # ------------------------------------------------------------------------------------------------
    # Loading and saving
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        codec_config=None,
        load_codec: bool = True,
        **kwargs,
    ) -> FishS2Processor:
        """Load from the official layout (tokenizer files + ``codec.pth`` [+ ``codec_config.yaml``], no
        ``processor_config.json``) or from a directory written by :meth:`save_pretrained`.

        ``codec_config`` describes a non-default ``codec.pth`` (official layout only; a saved codec has its
        config). ``load_codec=False`` loads only the text side. Processor settings (``max_length``,
        ``chunk_length``, ...) may be overridden as keyword arguments; hub arguments (``revision``,
        ``cache_dir``, ``token``, ``local_files_only``, ``subfolder``) are passed on.
        """
        # Passed by AutoProcessor and pipeline() to every component; model-only options (the codec stays fp32).
        from_pipeline = kwargs.pop("_from_pipeline", None)
        for key in ("_from_auto", "code_revision", "dtype", "torch_dtype", "device_map"):
            kwargs.pop(key, None)
        if not from_pipeline:
            return cls._load_files(pretrained_model_name_or_path, codec_config, load_codec, kwargs)
        try:  # pipeline() hides this error and carries on without us: record it for the model's generate()
            processor = cls._load_files(pretrained_model_name_or_path, codec_config, load_codec, kwargs)
        except Exception as error:
            record_pipeline_processor_error(str(pretrained_model_name_or_path), error)
            raise
        record_pipeline_processor_error(str(pretrained_model_name_or_path), None)
        return processor

    @classmethod
    def _load_files(
        cls, pretrained_model_name_or_path: str | os.PathLike, codec_config, load_codec: bool, kwargs: dict
    ) -> FishS2Processor:
        trust_remote_code = kwargs.pop("trust_remote_code", None)
        hub = {key: value for key in _HUB_KWARGS if (value := kwargs.pop(key, None)) is not None}
        init_names = ("max_length", "num_codebooks", "codebook_size", "chunk_length", "reference_cache_size")
        overrides = {key: kwargs.pop(key) for key in init_names if key in kwargs}
        if kwargs:
            raise TypeError(
                f"FishS2Processor.from_pretrained got unexpected keyword argument(s) {sorted(kwargs)}"
            )

        subfolder = hub.pop("subfolder", "")
        name = str(pretrained_model_name_or_path)

        def locate(filename: str) -> str | None:
            return cached_file(
                name, filename, subfolder=subfolder, _raise_exceptions_for_missing_entries=False, **hub
            )

        try:  # everything that may touch the Hub, so that offline/unknown-repo errors say what was loading
            processor_file = locate("processor_config.json")
            config_file = None if processor_file else locate("config.json")
            _check_tokenizer_file(name, subfolder)
            tokenizer = AutoTokenizer.from_pretrained(
                name, subfolder=subfolder, trust_remote_code=trust_remote_code, **hub
            )
            codec_subfolder = None
            if load_codec and locate(f"{CODEC_SUBFOLDER}/config.json") is not None:
                codec_subfolder = os.path.join(subfolder, CODEC_SUBFOLDER)
            elif load_codec and locate(OFFICIAL_CODEC_FILE) is not None:
                codec_subfolder = subfolder
        except OSError as error:
            raise OSError(f"cannot load FishS2Processor from {name!r}: {error}") from error
        except ValueError as error:  # e.g. a corrupt tokenizer.json
            raise ValueError(f"cannot load FishS2Processor from {name!r}: {error}") from error
        except Exception as error:
            if (
                type(error) is not Exception
            ):  # the tokenizers library raises bare Exceptions ("Model missing")
                raise
            raise ValueError(f"cannot load FishS2Processor from {name!r}: tokenizer.json: {error}") from error

        settings = {}
        if processor_file is not None:
            settings = {k: v for k, v in _read_json(processor_file).items() if k in init_names}
        elif config_file is not None:
            text_config = _read_json(config_file).get("text_config", {})
            context = text_config.get("max_seq_len", text_config.get("max_position_embeddings"))
            if context is not None:
                settings["max_length"] = int(context)
        settings.update(overrides)

        codec = None
        if load_codec:
            if codec_subfolder is None:
                raise FileNotFoundError(
                    f"no codec in {name!r}: expected {OFFICIAL_CODEC_FILE} (official layout) or "
                    f"{CODEC_SUBFOLDER}/config.json (saved processor); pass load_codec=False to load only the "
                    "tokenizer"
                )
            # A saved codec carries its config; codec_config= only describes an official codec.pth.
            official = codec_subfolder == subfolder
            codec = FishS2CodecModel.from_pretrained(
                name, subfolder=codec_subfolder, codec_config=codec_config if official else None, **hub
            )
        return cls(tokenizer, codec, **settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "processor_class": type(self).__name__,
            "max_length": self.max_length,
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "chunk_length": self.chunk_length,
            "reference_cache_size": self.reference_cache_size,
        }

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs
    ) -> list[str]:
        """Write ``processor_config.json``, the tokenizer files and the codec (safetensors + config in
        ``codec/``)."""
        max_shard_size = kwargs.pop("max_shard_size", None)
        files = super().save_pretrained(save_directory)
        if self._codec is not None:
            codec_kwargs = {"max_shard_size": max_shard_size} if max_shard_size is not None else {}
            self._codec.save_pretrained(Path(save_directory) / CODEC_SUBFOLDER, **codec_kwargs)
        if push_to_hub:
            self.push_to_hub(kwargs.pop("repo_id", Path(save_directory).name), **kwargs)
        return files


def _check_tokenizer_file(name: str, subfolder: str) -> None:
    """Require a local checkpoint's ``tokenizer.json``: without it transformers falls back to a tokenizer built from
    ``tokenizer_config.json`` alone (99 added tokens, no vocabulary) that turns every text into no tokens. (A Hub
    repo without it is caught by :class:`~.prompt.PromptEncoder`'s check that text makes tokens.)"""
    local = Path(name, subfolder)
    if local.is_dir():
        require_file(local / "tokenizer.json")


def _references_from_audio(audio, sampling_rate: int | None, reference_text) -> list[dict]:
    """``references`` from the ``audio=`` / ``sampling_rate=`` / ``reference_text=`` form of the processor call."""
    clips = list(audio) if isinstance(audio, (list, tuple)) else [audio]
    texts = [reference_text] if isinstance(reference_text, str) else list(reference_text or [])
    if audio is None or len(texts) != len(clips):
        raise ValueError(
            f"reference_text needs one transcript per audio clip: got {len(texts)} transcript(s) for "
            f"{0 if audio is None else len(clips)} clip(s)"
        )
    rate = {} if sampling_rate is None else {"sampling_rate": sampling_rate}
    return [{"text": text, "audio": clip, **rate} for clip, text in zip(clips, texts)]


def _codes_and_lengths(audio_codes, lengths):
    """``(sequences, lengths)`` of a generation output (explicit ``lengths`` win), other codes unchanged."""
    if hasattr(audio_codes, "sequences"):
        lengths = getattr(audio_codes, "lengths", None) if lengths is None else lengths
        audio_codes = audio_codes.sequences
    return audio_codes, lengths


def _read_json(path: str) -> dict:
    with open(require_file(path), encoding="utf-8") as handle:
        return json.load(handle)
