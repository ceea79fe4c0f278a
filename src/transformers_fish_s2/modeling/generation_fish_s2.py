"""``generate`` for Fish Audio S2: interleaved slow/fast decoding over static caches.

One call checks its options (:mod:`.generation_options`) and prompt, prepares the model's
:class:`~.decode_session.FishS2DecodeSession` (new buffers only when the shapes change), prefills the slow AR
on the prompt, and then repeats the session's **frame step** until every row has stopped or the frame budget is
spent. The frame step is eager or compiled once (``compile=True``); the prefill always runs eager.

The slow KV cache holds ``prompt + max_new_tokens`` slots rounded up to :data:`CACHE_LENGTH_BUCKET` (never the
whole context), so another prompt length in the same bucket reuses the same buffers and the same compiled
graph. The fast cache has ``num_codebooks`` slots and is overwritten every frame.

Randomness matches the reference: before every frame (the prefill frame included) one ``noise.uniform_()``
fills the session's noise buffer in the model dtype, laid out as the reference draws it
(:class:`~.decode_session.NoiseLayout`), so ``torch.manual_seed(S)`` before a CPU fp32 run reproduces its draws.
On CUDA the noise comes from the CUDA generator unless ``sample_noise_on_cpu=True`` asks for the CPU stream.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput, logging

from ..checkpoint import pipeline_processor_error
from ..validation import audio_codes_or_zeros, is_integer_tensor
from .audio_streamer import end_stream
from .decode_session import FishS2DecodeSession
from .generation_options import FishS2GenerationConfig, merge_generation_config
from .sampling import FishS2Sampler

logger = logging.get_logger(__name__)

CODE_PAD_VALUE = -1
"""Fills ``sequences`` after each row's last frame: never a valid code, so unmasked use fails loudly."""

CACHE_LENGTH_BUCKET = 256
"""The slow KV cache length is rounded up to a multiple of this (capped at the model context)."""

_SESSION_GUARD = threading.Lock()  # creates each model's decode session exactly once


def _stream(streamer: BaseStreamer | None, session: FishS2DecodeSession) -> None:
    if streamer is None:
        return
    if session.lengths.item() == session.frame_index.item():  # the frame just made was kept
        streamer.put(session.frame[:, 1:, None].to("cpu", copy=True))  # a copy: the buffer changes next frame


def _ends_stream_on_failure(generate: Callable) -> Callable:
    """Make every failure of ``generate`` (bad options included) end its streamer, handing the error on, so a
    consumer iterating the streamer in another thread never waits forever."""
    signature = inspect.signature(generate)

    @functools.wraps(generate)
    def wrapper(*args, **kwargs):
        try:
            return generate(*args, **kwargs)
        except BaseException as error:
            try:
                streamer = signature.bind(*args, **kwargs).arguments.get("streamer")
            except TypeError:  # the call itself was malformed: there is no streamer to tell
                streamer = None
            if streamer is not None:
                end_stream(streamer, error)
            raise

    return wrapper


@dataclass
class FishS2GenerateOutput(ModelOutput):
    """Output of :meth:`FishS2GenerationMixin.generate`.

    Args:
        sequences: generated codes ``[B, num_codebooks, N]``; row ``b`` is valid up to ``lengths[b]`` and
            filled with :data:`CODE_PAD_VALUE` (-1) after it. The ``<|im_end|>`` frame is not included.
        lengths: frames per row ``[B]``.
        eos_reached: ``[B]`` bool, True where the row ended with ``<|im_end|>`` (False: length limit).
    """

    sequences: torch.LongTensor | None = None
    lengths: torch.LongTensor | None = None
    eos_reached: torch.BoolTensor | None = None


class FishS2GenerationMixin(GenerationMixin):
    """``generate`` for :class:`FishS2ForConditionalGeneration` (self-contained; no GenerationMixin internals).

    Mixing this in also makes ``model.generation_config`` a :class:`FishS2GenerationConfig`, so a fresh model
    and a checkpoint without ``generation_config.json`` sample with the shipped defaults.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.generation_config_class = FishS2GenerationConfig

    def adjust_generation_fn(self, *args, **kwargs):
        """transformers' loading of ``generation_config.json``, then the Fish S2 defaults for unset fields."""
        super().adjust_generation_fn(*args, **kwargs)
        self.generation_config = FishS2GenerationConfig(**self.generation_config.to_dict())

    # ------------------------------------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------------------------------------

    @property
    def decode_session(self) -> FishS2DecodeSession:
        """The decode session ``generate`` uses on this model (created on first use; one per model)."""
        session = self.__dict__.get("_decode_session")
        if session is None:
            with _SESSION_GUARD:
                session = self.__dict__.get("_decode_session")
                if session is None:
                    session = self.__dict__["_decode_session"] = FishS2DecodeSession(self)
        return session

    def generation_lock(self) -> threading.RLock:
        """The re-entrant lock every ``generate`` call on this model holds (its decode session is shared). Hold it
        to run several calls back to back with no other thread's call in between, as ``generate_long`` does."""
        return self.decode_session.lock

    def release_generation_state(self) -> None:
        """Free the KV caches and buffers that ``generate`` keeps for the next call."""
        with self.generation_lock():
            self.decode_session.release()

    @_ends_stream_on_failure
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        audio_codes: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        streamer: BaseStreamer | None = None,
        *,
        compile: bool = False,
        sample_noise_on_cpu: bool = False,
        stop_check_interval: int | None = None,
        **kwargs,
    ) -> FishS2GenerateOutput | torch.LongTensor:
        """Generate audio codes for a batch of prompts.

        Args:
            input_ids: prompt token ids ``[B, T]``, left-padded (as ``FishS2Processor`` returns them).
            audio_codes: codes of the prompt's audio frames ``[B, num_codebooks, T]`` (zeros elsewhere).
            attention_mask: ``[B, T]``, 0 on left padding.
            generation_config: overrides ``model.generation_config``; keyword arguments override both.
                Used fields: ``do_sample`` (False = greedy), ``temperature``, ``top_p``, ``top_k`` (0 or None
                = off), ``max_new_tokens`` (frames, the ``<|im_end|>`` frame included), ``repetition_penalty``
                (transformers semantics over the RAS window of recent semantic tokens; 1.0 = off, as the
                reference, which ignores it), ``ras_window_size``, ``ras_temperature``, ``ras_top_p``,
                ``return_dict_in_generate`` (False returns only ``sequences``), ``compile_config``.
            streamer: receives each kept frame's codes ``[1, num_codebooks, 1]`` as it is made, then ``end()``
                (batch size 1), e.g. :class:`~transformers_fish_s2.modeling.audio_streamer.FishS2AudioStreamer`.
                When generate raises, the streamer is ended too: ``fail(error)`` if it has one, else ``end()``.
            compile: run the frame step through ``torch.compile(fullgraph=True)``: inductor, with CUDA graphs on
                CUDA and its C++ wrapper elsewhere, or the backend/mode/options of
                ``generation_config.compile_config`` (a transformers ``CompileConfig``). The first call
                compiles; later calls in the same cache bucket reuse the graph, whatever their sampling values.
            sample_noise_on_cpu: on an accelerator, draw the sampling noise from the CPU generator (so a
                seeded run draws the same numbers as on CPU) and copy it over.
            stop_check_interval: frames between two checks whether every row has stopped. Each check waits for
                the device (a host sync, which stalls CUDA graph replays); frames made after the last row
                stopped are discarded, so the codes do not depend on it. Default: 1 on CPU, 8 elsewhere.

        Returns:
            :class:`FishS2GenerateOutput` (``sequences [B, num_codebooks, N]``, ``lengths``, ``eos_reached``).
            Rows that stop early keep running in the static batch until all rows stop, but their extra
            frames are discarded. Unlike the reference, a row that hits ``max_new_tokens`` keeps all its
            frames (``docs/reference-behaviour.md``). Concurrent calls on one model take turns (they share its
            decode session).
        """
        config = merge_generation_config(self.generation_config, generation_config, kwargs)
        self._refuse_pipeline_without_processor(audio_codes)
        input_ids, audio_codes, attention_mask = self._check_prompt(input_ids, audio_codes, attention_mask)
        batch_size, prompt_length = input_ids.shape
        if streamer is not None and batch_size != 1:
            raise ValueError(f"streaming supports batch size 1, got {batch_size} prompts")
        max_new_tokens = self._frame_budget(config.max_new_tokens, prompt_length)
        device, dtype = input_ids.device, self.text_model.model.norm.weight.dtype
        if stop_check_interval is None:
            stop_check_interval = 1 if device.type == "cpu" else 8
        elif (
            isinstance(stop_check_interval, bool)
            or not isinstance(stop_check_interval, int)
            or stop_check_interval < 1
        ):
            raise ValueError(f"stop_check_interval must be a positive integer, got {stop_check_interval!r}")
        sampler = FishS2Sampler.from_generation_config(self.config, config, device=device, dtype=dtype)
        cache_length = min(
            math.ceil((prompt_length + max_new_tokens) / CACHE_LENGTH_BUCKET) * CACHE_LENGTH_BUCKET,
            self.config.text_config.max_seq_len,
        )

        session = self.decode_session
        with session.lock:
            session.prepare(
                batch_size=batch_size, cache_length=cache_length, window=config.ras_window_size,
                sampler=sampler, device=device, dtype=dtype,
            )  # fmt: skip
            session.start(attention_mask, sampler)
            frame_step = session.frame_step(compile, config.compile_config)
            session.draw_noise(on_cpu=sample_noise_on_cpu)
            session.prefill_frame(input_ids, audio_codes)
            _stream(streamer, session)
            for frame in range(1, max_new_tokens):
                if (frame - 1) % stop_check_interval == 0 and bool(session.finished.all()):
                    break
                session.draw_noise(on_cpu=sample_noise_on_cpu)
                frame_step()
                _stream(streamer, session)
            if streamer is not None:
                streamer.end()
            lengths = session.lengths.clone()
            frames = torch.arange(cache_length, device=device)
            sequences = session.sequences.masked_fill(frames >= lengths[:, None, None], CODE_PAD_VALUE)
            sequences = sequences[:, :, : int(lengths.max())]
            eos_reached = session.finished.clone()
        if not config.return_dict_in_generate:
            return sequences
        return FishS2GenerateOutput(sequences=sequences, lengths=lengths, eos_reached=eos_reached)

    def _refuse_pipeline_without_processor(self, audio_codes: torch.Tensor | None) -> None:
        """``pipeline("text-to-speech")`` swallows a processor that fails to load (a truncated ``codec.pth``, a
        codec config that does not match it) and feeds bare tokenizer ids here; it would then return codes as
        "audio" with ``sampling_rate=None``. The processor always passes ``audio_codes``, and records its loading
        error for this case."""
        error = pipeline_processor_error(self.name_or_path) if audio_codes is None else None
        if error is not None:
            raise ValueError(
                f"pipeline('text-to-speech') is running without the FishS2Processor of {self.name_or_path!r}, "
                f"whose loading failed: {error}"
            )

    def _check_prompt(
        self,
        input_ids: torch.Tensor | None,
        audio_codes: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor]:
        """Validated prompt tensors on the model's device (audio_codes/attention_mask filled in if absent)."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or 0 in input_ids.shape:
            shape = (
                tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            )
            raise ValueError(
                f"input_ids must be a non-empty [batch, seq_len] tensor of token ids, got {shape}"
            )
        if not is_integer_tensor(input_ids):
            raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
        if input_ids.device.type == "meta":
            raise ValueError("input_ids is on the meta device (a tensor without data); pass real token ids")
        for name, value in (("audio_codes", audio_codes), ("attention_mask", attention_mask)):
            if value is not None and not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a tensor (or None), got {type(value).__name__}")
        batch_size, length = input_ids.shape
        num_codebooks = self.config.num_codebooks
        device = self.device
        input_ids = input_ids.to(device=device, dtype=torch.long)
        audio_codes = audio_codes_or_zeros(audio_codes, input_ids, num_codebooks)
        if not is_integer_tensor(audio_codes):
            raise ValueError(f"audio_codes must hold integer codes, got dtype {audio_codes.dtype}")
        audio_codes = audio_codes.to(device=device, dtype=torch.long)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif tuple(attention_mask.shape) != (batch_size, length):
            raise ValueError(
                f"attention_mask must be [batch, seq_len] = [{batch_size}, {length}] like input_ids, got "
                f"{tuple(attention_mask.shape)}"
            )
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (prompt)")
        if bool((attention_mask.diff(dim=1) < 0).any()) or not bool(attention_mask[:, -1].all()):
            raise ValueError(
                "generate() needs left padding: every row of attention_mask must be 0…0 1…1 (ending with a "
                "prompt token); the processor pads on the left"
            )
        return input_ids, audio_codes, attention_mask

    def _frame_budget(self, max_new_tokens: int, prompt_length: int) -> int:
        context = self.config.text_config.max_seq_len
        if prompt_length >= context:
            raise ValueError(
                f"the prompt is {prompt_length} tokens but the model context (text_config.max_seq_len) is "
                f"{context}; at least one position must stay free for generated audio"
            )
        if prompt_length + max_new_tokens > context:
            logger.warning(
                f"max_new_tokens={max_new_tokens} with a {prompt_length}-token prompt exceeds the model context "
                f"of {context}; generating at most {context - prompt_length} frames"
            )
            return context - prompt_length
        return max_new_tokens
