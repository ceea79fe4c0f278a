"""Generation for Fish Audio S2: interleaved slow/fast decoding with static caches (DESIGN D3-D5).

One ``generate`` call allocates its state once (or reuses the previous call's when the shapes match),
prefills the slow AR on the prompt, and then repeats a **frame step** until every row has stopped:

    slow AR decode of the previous frame → semantic token (reference sampler + RAS)
    → fast AR over the residual codebooks, one position per codebook, sampled like the reference
    → frame [token, c0 … c9] recorded in place

The frame step reads and writes only preallocated tensors (caches, last frame, RAS window, lengths, the
output buffer), has static shapes and no Python branch on tensor values, so ``torch.compile(fullgraph=True)``
compiles it once (``compile=True``; on CUDA with CUDA graphs). The prefill always runs eager.

The slow KV cache holds ``prompt + max_new_tokens`` slots rounded up to :data:`CACHE_LENGTH_BUCKET` (never the
32k context the reference allocates), so another prompt length in the same bucket reuses the same
state and the same compiled graph. The fast cache has ``num_codebooks`` slots and is overwritten every frame.

Randomness matches the reference (SPEC §4.1.4): before every frame — the prefill frame included — one call
``noise.uniform_()`` fills ``[B, 2·vocab + (num_codebooks-1)·codebook_size]`` uniforms in the model dtype, in
the reference's order (normal draw, RAS draw, codebooks 1…9); for one row this is exactly the stream of the
reference's ``rand_like`` calls, so ``torch.manual_seed(S)`` before a CPU fp32 run reproduces its draws. No
noise is drawn after every row has ended. On CUDA the noise comes from the CUDA generator unless
``sample_noise_on_cpu=True`` asks for the CPU stream (for reproducing CPU runs; one small copy per frame).
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
import weakref
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.cache_utils import StaticCache
from transformers.generation.configuration_utils import CompileConfig
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput, logging

from .sampling import FishS2Sampler

logger = logging.get_logger(__name__)

CODE_PAD_VALUE = -1
"""Fills ``sequences`` after each row's last frame: never a valid code, so unmasked use fails loudly."""

CACHE_LENGTH_BUCKET = 256
"""The slow KV cache length is rounded up to a multiple of this (capped at the model context)."""

FISH_S2_GENERATION_DEFAULTS = {
    "do_sample": True,
    "temperature": 0.8,
    "top_p": 0.8,
    "top_k": 30,
    "repetition_penalty": 1.0,
    "max_new_tokens": 1024,
    "ras_window_size": 10,
    "ras_temperature": 1.0,
    "ras_top_p": 0.9,
    "return_dict_in_generate": True,
}
"""Shipped sampling defaults: the authors' HTTP API values (temperature/top_p 0.8, top_k 30, 1024 frames)
with their repetition-aware sampling (window 10, fallback temperature 1.0 / top_p 0.9). The reference
accepts ``repetition_penalty`` but never applies it, hence 1.0 (off)."""

FISH_S2_EXTRA_FIELDS = ("ras_window_size", "ras_temperature", "ras_top_p")

# transformers generation options this loop does not implement; setting one is an error, not a no-op.
_UNSUPPORTED_OPTIONS = (
    "max_length", "min_length", "min_new_tokens", "max_time", "stop_strings", "min_p", "top_h", "typical_p",
    "epsilon_cutoff", "eta_cutoff", "encoder_repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
    "sequence_bias", "suppress_tokens", "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id",
    "guidance_scale", "watermarking_config", "penalty_alpha", "dola_layers", "constraints", "force_words_ids",
    "output_attentions", "output_hidden_states", "output_scores", "output_logits",
)  # fmt: skip

# Numeric options: what each must be (checked for type before transformers' own validation compares them).
_INTEGER_OPTIONS = {
    "max_new_tokens": "a positive integer",
    "top_k": "an integer >= 0 (0 disables it)",
    "ras_window_size": "an integer >= 0",
}
_REAL_OPTIONS = {
    "temperature": "> 0 when sampling",
    "top_p": "in (0, 1]",
    "ras_temperature": "> 0",
    "ras_top_p": "in (0, 1]",
    "repetition_penalty": "> 0",
}


def _check_option_types(options: dict) -> None:
    for names, kind in ((_INTEGER_OPTIONS, numbers.Integral), (_REAL_OPTIONS, numbers.Real)):
        for name, requirement in names.items():
            value = options.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise ValueError(f"generation config: {name} must be {requirement}, got {value!r}")


_GENERATION_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GENERATION_LOCKS_GUARD = threading.Lock()


def _generation_lock(model) -> threading.RLock:
    """The model's generate lock: its decode state is shared, so concurrent calls take turns. Kept outside
    the model (a lock attribute would break ``copy.deepcopy`` and pickling); re-entrant, so a caller holding it
    (``generate_long``) can call ``generate``."""
    with _GENERATION_LOCKS_GUARD:
        lock = _GENERATION_LOCKS.get(model)
        if lock is None:
            lock = _GENERATION_LOCKS[model] = threading.RLock()
        return lock


def _one_call_at_a_time(method):
    """Run ``method`` under the model's generate lock (see :func:`_generation_lock`)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with _generation_lock(self):
            return method(self, *args, **kwargs)

    return locked


class FishS2GenerationConfig(GenerationConfig):
    """A ``GenerationConfig`` whose unset fields take the Fish S2 defaults (:data:`FISH_S2_GENERATION_DEFAULTS`).

    Extra fields: ``ras_window_size`` (frames of history for repetition-aware sampling; 0 disables it),
    ``ras_temperature`` and ``ras_top_p`` (parameters of the fallback draw). Saved as ordinary
    ``generation_config.json`` entries, which plain ``GenerationConfig`` loading keeps.
    """

    def __init__(self, **kwargs):
        # Set the extra fields ourselves: GenerationConfig drops unknown kwargs when built from a model config.
        extra = {key: kwargs.pop(key, None) for key in FISH_S2_EXTRA_FIELDS}
        for key, value in FISH_S2_GENERATION_DEFAULTS.items():
            if key not in FISH_S2_EXTRA_FIELDS and kwargs.get(key) is None:
                kwargs[key] = value
        super().__init__(**kwargs)
        for key, value in extra.items():
            setattr(self, key, FISH_S2_GENERATION_DEFAULTS[key] if value is None else value)
        # These are real settings, not values derived from the model config: saved with the flag set,
        # transformers' loader would drop the extra fields on the way back.
        self._from_model_config = False

    @classmethod
    def from_model_config(cls, model_config) -> FishS2GenerationConfig:
        # transformers' version compares every field with a plain GenerationConfig, which lacks the extra ones.
        return cls(**GenerationConfig.from_model_config(model_config).to_dict())


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


class FishS2DecodeState:
    """Every tensor a generate call reads or writes after the prefill, allocated once.

    All of them keep their storage for the whole call (and across calls with the same shapes), which is
    what CUDA graphs need; the frame step only mutates them in place.
    """

    def __init__(
        self,
        model: FishS2GenerationMixin,
        *,
        batch_size: int,
        cache_length: int,
        window: int,
        sampler: FishS2Sampler,
        device: torch.device,
        dtype: torch.dtype,
    ):
        config = model.config
        text_config = config.text_config
        self.key = (batch_size, cache_length, window, sampler.do_sample, device, dtype)
        self.sampler = sampler
        self.slow_cache = StaticCache(config=text_config, max_cache_len=cache_length)
        self.slow_cache.early_initialization(
            batch_size, text_config.num_key_value_heads, text_config.head_dim, dtype, device
        )
        self.fast_cache = model.audio_decoder.make_fast_cache(batch_size, device=device, dtype=dtype)

        def buffer(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        num_codebooks = config.num_codebooks
        self.attention_mask = buffer(batch_size, cache_length)  # 1 = real or generated slot, 0 = left padding
        self.slot = buffer(1)  # cache slot of the next slow-AR input
        self.position_ids = buffer(batch_size, 1)  # its RoPE position, per row
        self.frame = buffer(batch_size, 1 + num_codebooks)  # last frame: token, codes
        self.recent = buffer(batch_size, window)  # main tokens of the last `window` decode frames (RAS)
        self.frame_index = buffer()  # frames made so far (0-d)
        self.lengths = buffer(batch_size)  # frames kept per row
        self.finished = buffer(batch_size, dtype=torch.bool)
        self.sequences = buffer(batch_size, num_codebooks, cache_length)  # frame f in column f
        noise_width = 2 * text_config.vocab_size + (num_codebooks - 1) * config.codebook_size
        self.noise = buffer(batch_size, noise_width, dtype=dtype) if sampler.do_sample else None
        for tensor in (
            self.attention_mask, self.slot, self.position_ids, self.frame, self.recent, self.frame_index,
            self.lengths, self.finished, self.sequences, self.noise, *sampler_tensors(sampler),
        ):  # fmt: skip
            if tensor is not None:
                torch._dynamo.mark_static_address(tensor)

    def reset(self, attention_mask: torch.Tensor, sampler: FishS2Sampler) -> None:
        """Start a new call: prompt padding mask ``[B, T]`` and this call's sampling parameters."""
        length = attention_mask.shape[1]
        self.attention_mask.fill_(1)
        self.attention_mask[:, :length].copy_(attention_mask)
        self.slot.fill_(length)
        self.position_ids.copy_(attention_mask.sum(-1, keepdim=True))
        for tensor in (self.frame, self.recent, self.frame_index, self.lengths, self.finished):
            tensor.zero_()
        for ours, new in zip(sampler_tensors(self.sampler), sampler_tensors(sampler)):
            ours.copy_(new)
        self.sampler.repetition_penalty = sampler.repetition_penalty


def _is_integer(tensor: torch.Tensor) -> bool:
    return not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)


def sampler_tensors(sampler: FishS2Sampler) -> tuple[torch.Tensor, ...]:
    return (
        sampler.temperature, sampler.top_p, sampler.top_k, sampler.ras_temperature, sampler.ras_top_p,
        sampler.logit_bias,
    )  # fmt: skip


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

    def generation_lock(self) -> threading.RLock:
        """The re-entrant lock every ``generate`` call on this model holds (its decode state is shared). Hold it
        to run several calls back to back with no other thread's call in between, as ``generate_long`` does."""
        return _generation_lock(self)

    @torch.no_grad()
    @_one_call_at_a_time
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
                ``return_dict_in_generate`` (False returns only ``sequences``).
            streamer: receives each kept frame's codes ``[1, num_codebooks, 1]`` as it is made, then ``end()``
                (batch size 1), e.g. :class:`~transformers_fish_s2.modeling.audio_streamer.FishS2AudioStreamer`.
            compile: run the frame step through ``torch.compile(fullgraph=True)``: inductor, with CUDA graphs on
                CUDA, or the backend/mode/options of ``generation_config.compile_config`` (a transformers
                ``CompileConfig``). The first call compiles; later calls in the same cache bucket reuse the graph.
            sample_noise_on_cpu: on an accelerator, draw the sampling noise from the CPU generator (so a
                seeded run draws the same numbers as on CPU) and copy it over.

        Returns:
            :class:`FishS2GenerateOutput` (``sequences [B, num_codebooks, N]``, ``lengths``, ``eos_reached``).
            Rows that stop early keep running in the static batch until all rows stop, but their extra
            frames are discarded. Unlike the reference, a row that hits ``max_new_tokens`` keeps all its
            frames (the reference drops the last one, SPEC §9.9). Concurrent calls on one model take turns
            (they share its decode state).
        """
        config = self._merge_generation_config(generation_config, kwargs)
        input_ids, audio_codes, attention_mask = self._check_prompt(input_ids, audio_codes, attention_mask)
        batch_size, prompt_length = input_ids.shape
        if streamer is not None and batch_size != 1:
            raise ValueError(f"streaming supports batch size 1, got {batch_size} prompts")
        max_new_tokens = self._frame_budget(config.max_new_tokens, prompt_length)

        device, dtype = input_ids.device, self.text_model.model.norm.weight.dtype
        sampler = self._build_sampler(config, device, dtype)
        cache_length = min(
            math.ceil((prompt_length + max_new_tokens) / CACHE_LENGTH_BUCKET) * CACHE_LENGTH_BUCKET,
            self.config.text_config.max_seq_len,
        )
        state = self._decode_state(batch_size, cache_length, config.ras_window_size, sampler, device, dtype)
        state.reset(attention_mask, sampler)
        draw_noise = self._noise_drawer(state, sample_noise_on_cpu)
        frame_step = self._frame_step(compile, config.compile_config)

        draw_noise()
        self._prefill_frame(state, input_ids, audio_codes)
        self._stream(streamer, state)
        for _ in range(max_new_tokens - 1):
            if bool(state.finished.all()):
                break
            draw_noise()
            frame_step(state)
            self._stream(streamer, state)
        if streamer is not None:
            streamer.end()

        lengths = state.lengths.clone()
        frames = torch.arange(cache_length, device=device)
        sequences = state.sequences.masked_fill(frames >= lengths[:, None, None], CODE_PAD_VALUE)
        sequences = sequences[:, :, : int(lengths.max())]
        if not config.return_dict_in_generate:
            return sequences
        return FishS2GenerateOutput(sequences=sequences, lengths=lengths, eos_reached=state.finished.clone())

    # ------------------------------------------------------------------------------------------------
    # The frame: prefill (eager) and the decode step (the compiled unit)
    # ------------------------------------------------------------------------------------------------

    def _prefill_frame(
        self, state: FishS2DecodeState, input_ids: torch.Tensor, audio_codes: torch.Tensor
    ) -> None:
        """Run the prompt through the slow AR and make frame 0 (it does not enter the RAS window)."""
        length = input_ids.shape[1]
        output = self(
            input_ids=input_ids,
            audio_codes=audio_codes,
            attention_mask=state.attention_mask,
            past_key_values=state.slow_cache,
            cache_position=torch.arange(length, device=input_ids.device),
            use_cache=True,
            logits_to_keep=1,
        )
        token, codes = self._sample_frame(state, output.logits[:, -1], output.last_hidden_state[:, -1])
        self._record_frame(state, token, codes, remember=False)

    def _decode_frame(self, state: FishS2DecodeState) -> None:
        """One frame step: feed the last frame to the slow AR, then sample the next frame. In place only."""
        frame = state.frame
        output = self(
            inputs_embeds=self.embed_inputs(frame[:, :1], frame[:, 1:, None]),
            attention_mask=state.attention_mask,
            position_ids=state.position_ids,
            past_key_values=state.slow_cache,
            cache_position=state.slot,
            use_cache=True,
            logits_to_keep=1,
        )
        state.slot.add_(1)
        state.position_ids.add_(1)
        token, codes = self._sample_frame(state, output.logits[:, -1], output.last_hidden_state[:, -1])
        self._record_frame(state, token, codes, remember=True)

    def _sample_frame(
        self, state: FishS2DecodeState, logits: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Semantic token from the slow logits ``[B, V]``, then the residual codes from the fast AR fed the
        slow hidden state ``[B, D]``: returns ``token [B]`` and ``codes [B, num_codebooks]``."""
        sampler, noise, fast = state.sampler, state.noise, self.audio_decoder
        vocab_size, codebook_size = logits.shape[-1], self.config.codebook_size

        def uniform(start: int, width: int) -> torch.Tensor | None:
            return None if noise is None else noise[:, start : start + width]

        token = sampler.sample_semantic_token(
            logits, state.recent, uniform(0, vocab_size), uniform(vocab_size, vocab_size)
        )
        code = (token - self.config.semantic_start_token_id).clamp(0, codebook_size - 1)
        codes = [code]
        # Fast positions 0 (the slow hidden state) and 1 (the semantic code) in one pass, then one per codebook.
        inputs, position = torch.stack([fast.project_in(hidden), fast.embed_codes(code)], dim=1), 0
        for index in range(1, self.config.num_codebooks):
            fast_logits = fast.decode_step(inputs, position, state.fast_cache)
            code = sampler.sample_code(
                fast_logits, uniform(2 * vocab_size + (index - 1) * codebook_size, codebook_size)
            )
            codes.append(code)
            inputs, position = fast.embed_codes(code)[:, None], index + 1
        return token, torch.stack(codes, dim=1)

    def _record_frame(
        self, state: FishS2DecodeState, token: torch.Tensor, codes: torch.Tensor, *, remember: bool
    ) -> None:
        """Store the frame, count it for rows still running (never the ``<|im_end|>`` frame), update RAS."""
        is_end = token == self.config.eos_token_id
        state.lengths.add_(~state.finished & ~is_end)
        state.finished.logical_or_(is_end)
        state.sequences.index_copy_(2, state.frame_index.view(1), codes[:, :, None])
        state.frame[:, 0].copy_(token)
        state.frame[:, 1:].copy_(codes)
        window = state.recent.shape[1]
        if remember and window:
            state.recent.index_copy_(1, ((state.frame_index - 1) % window).view(1), token[:, None])
        state.frame_index.add_(1)

    # ------------------------------------------------------------------------------------------------
    # Set-up helpers
    # ------------------------------------------------------------------------------------------------

    def _frame_step(self, compile: bool, compile_config: CompileConfig | None):
        """The frame step, eager or compiled (cached per compile settings, so later calls reuse the graph).

        ``fullgraph`` is always on: a graph break inside the step is a bug. Without a ``compile_config`` the
        backend is inductor, with CUDA graphs (``mode="reduce-overhead"``) on CUDA.
        """
        if not compile:
            return self._decode_frame
        quantizer = getattr(self, "hf_quantizer", None)
        if quantizer is not None and not quantizer.is_compileable:
            raise ValueError(
                f"compile=True does not work with {type(quantizer).__name__} quantization (its kernels do not "
                "compile); generate with compile=False"
            )
        if compile_config is None:
            backend, mode, options = (
                "inductor",
                ("reduce-overhead" if self.device.type == "cuda" else None),
                None,
            )
        else:
            backend, mode, options = compile_config.backend, compile_config.mode, compile_config.options
        key = (backend, mode, repr(options))
        compiled_steps = self.__dict__.setdefault("_compiled_decode_frames", {})
        if key not in compiled_steps:
            settings = {"mode": mode} if options is None else {"options": options}  # torch takes one of them
            compiled_steps[key] = torch.compile(
                self._decode_frame, fullgraph=True, backend=backend, **settings
            )
        return compiled_steps[key]

    def _decode_state(
        self,
        batch_size: int,
        cache_length: int,
        window: int,
        sampler: FishS2Sampler,
        device: torch.device,
        dtype: torch.dtype,
    ) -> FishS2DecodeState:
        """The previous call's state when it has the same shapes (same buffers → no recompile, no new CUDA
        graph), else a new one (the old one is released first)."""
        key = (batch_size, cache_length, window, sampler.do_sample, device, dtype)
        state = self.__dict__.get("_fish_s2_decode_state")
        if state is None or state.key != key:
            self.__dict__["_fish_s2_decode_state"] = None
            state = FishS2DecodeState(
                self,
                batch_size=batch_size,
                cache_length=cache_length,
                window=window,
                sampler=sampler,
                device=device,
                dtype=dtype,
            )
            self.__dict__["_fish_s2_decode_state"] = state
        return state

    def release_generation_state(self) -> None:
        """Free the KV caches that ``generate`` keeps for the next call."""
        self.__dict__.pop("_fish_s2_decode_state", None)

    @staticmethod
    def _noise_drawer(state: FishS2DecodeState, on_cpu: bool):
        noise = state.noise
        if noise is None:
            return lambda: None
        if not on_cpu or noise.device.type == "cpu":
            return noise.uniform_
        host = torch.empty(noise.shape, dtype=noise.dtype, pin_memory=torch.cuda.is_available())

        def draw() -> None:
            noise.copy_(host.uniform_(), non_blocking=True)

        return draw

    @staticmethod
    def _stream(streamer: BaseStreamer | None, state: FishS2DecodeState) -> None:
        if streamer is None:
            return
        if state.lengths.item() == state.frame_index.item():  # the frame just made was kept
            streamer.put(
                state.frame[:, 1:, None].to("cpu", copy=True)
            )  # a copy: the buffer changes next frame

    def _merge_generation_config(
        self, generation_config: GenerationConfig | None, kwargs: dict
    ) -> GenerationConfig:
        """Priority: kwargs > ``generation_config`` > ``model.generation_config`` > shipped defaults."""
        if generation_config is not None and not isinstance(generation_config, GenerationConfig):
            raise TypeError(
                "generation_config must be a transformers GenerationConfig, got "
                f"{type(generation_config).__name__}; pass options as keyword arguments"
            )
        _check_option_types(kwargs)
        merged = GenerationConfig(**(generation_config or self.generation_config).to_dict())
        if generation_config is not None:
            merged.update(**self.generation_config.to_dict(), defaults_only=True, allow_custom_entries=True)
        merged = FishS2GenerationConfig(**merged.to_dict())
        unknown = merged.update(**kwargs)
        if unknown:
            raise TypeError(f"generate() got unexpected keyword argument(s) {sorted(unknown)}")
        self._check_generation_config(merged)
        return merged

    @staticmethod
    def _check_generation_config(config: GenerationConfig) -> None:
        unsupported = [name for name in _UNSUPPORTED_OPTIONS if getattr(config, name, None)]
        if (config.num_beams or 1) > 1:
            unsupported.append("num_beams")
        if (config.num_return_sequences or 1) > 1:
            unsupported.append("num_return_sequences")
        if unsupported:
            raise ValueError(
                f"Fish S2 generate() does not support {sorted(unsupported)}; it decodes greedily or with the "
                "reference sampler (temperature, top_p, top_k, repetition_penalty, ras_*) up to max_new_tokens"
            )

        _check_option_types(
            {name: getattr(config, name, None) for name in (*_INTEGER_OPTIONS, *_REAL_OPTIONS)}
        )

        def require(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(f"generation config: {message}")

        require(
            config.max_new_tokens is not None and config.max_new_tokens >= 1,
            f"max_new_tokens must be a positive integer, got {config.max_new_tokens!r}",
        )
        require(
            config.ras_window_size is not None and config.ras_window_size >= 0,
            f"ras_window_size must be an integer >= 0, got {config.ras_window_size!r}",
        )
        require(
            config.repetition_penalty > 0, f"repetition_penalty must be > 0, got {config.repetition_penalty}"
        )
        if config.do_sample:
            require(
                config.temperature > 0, f"temperature must be > 0 when sampling, got {config.temperature}"
            )
            require(0 < config.top_p <= 1, f"top_p must be in (0, 1], got {config.top_p}")
            require(
                config.top_k is None or config.top_k >= 0,
                f"top_k must be an integer >= 0 (0 disables it), got {config.top_k!r}",
            )
            require(config.ras_temperature > 0, f"ras_temperature must be > 0, got {config.ras_temperature}")
            require(0 < config.ras_top_p <= 1, f"ras_top_p must be in (0, 1], got {config.ras_top_p}")

    def _build_sampler(
        self, config: GenerationConfig, device: torch.device, dtype: torch.dtype
    ) -> FishS2Sampler:
        return FishS2Sampler.build(
            do_sample=bool(config.do_sample),
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            ras_temperature=config.ras_temperature,
            ras_top_p=config.ras_top_p,
            repetition_penalty=float(config.repetition_penalty),
            vocab_size=self.config.text_config.vocab_size,
            semantic_start_token_id=self.config.semantic_start_token_id,
            semantic_end_token_id=self.config.semantic_end_token_id,
            eos_token_id=self.config.eos_token_id,
            device=device,
            dtype=dtype,
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
        if not _is_integer(input_ids):
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
        if audio_codes is None:
            audio_codes = input_ids.new_zeros(batch_size, num_codebooks, length)
        elif tuple(audio_codes.shape) != (batch_size, num_codebooks, length):
            raise ValueError(
                f"audio_codes must be [batch, num_codebooks, seq_len] = [{batch_size}, {num_codebooks}, {length}] "
                f"to match input_ids, got {tuple(audio_codes.shape)}"
            )
        elif not _is_integer(audio_codes):
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
