"""The decode session: every piece of state the frame loop reads or writes, and the frame step itself.

A :class:`FishS2DecodeSession` belongs to one model and holds, for one batch of rows, the slow and fast KV
caches, the last frame, the repetition-aware-sampling window, per-row lengths and the output buffer, the
sampling parameters (one row each) and the sampling noise; plus the compiled frame step and the lock that
keeps two loops from sharing it. All buffers are allocated by :meth:`~FishS2DecodeSession.prepare` and keep
their storage until the shapes change, which is what CUDA graphs need; the frame step only writes them in
place, has static shapes and no Python branch on tensor values, so ``torch.compile(fullgraph=True)``
compiles it once.

``model.generate`` uses the model's own session (``model.decode_session``). A serving engine can own one
session per batch of slots and drive :meth:`~FishS2DecodeSession.decode_frame` itself (or subclass it).

One frame, in order (the reference's order, see ``docs/reference-behaviour.md``): the slow AR reads the
last frame → semantic token (reference sampler with repetition-aware sampling) → the fast transformer over
codebooks picks codebooks 1…9, one position each → the frame ``[token, c0 … c9]`` is recorded.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers.cache_utils import StaticCache
from transformers.generation.configuration_utils import CompileConfig

from .sampling import FishS2Sampler


@dataclass(frozen=True)
class NoiseLayout:
    """Where each draw of a frame finds its uniform noise in the per-frame noise buffer ``[B, width]``.

    One ``noise.uniform_()`` per frame fills, in the reference's order: the semantic draw (``vocab_size``
    uniforms), the repetition-aware fallback draw (``vocab_size``), then codebooks 1…n-1 (``codebook_size``
    each). For one row this is exactly the stream of the reference's per-draw ``rand_like`` calls.
    """

    vocab_size: int
    codebook_size: int
    num_codebooks: int

    @property
    def width(self) -> int:
        return 2 * self.vocab_size + (self.num_codebooks - 1) * self.codebook_size

    def semantic(self, noise: torch.Tensor) -> torch.Tensor:
        """Uniforms of the semantic-token draw ``[B, vocab_size]``."""
        return noise[:, : self.vocab_size]

    def ras(self, noise: torch.Tensor) -> torch.Tensor:
        """Uniforms of the repetition-aware fallback draw ``[B, vocab_size]``."""
        return noise[:, self.vocab_size : 2 * self.vocab_size]

    def codebook(self, noise: torch.Tensor, index: int) -> torch.Tensor:
        """Uniforms of residual codebook ``index`` (1 … num_codebooks-1) ``[B, codebook_size]``."""
        start = 2 * self.vocab_size + (index - 1) * self.codebook_size
        return noise[:, start : start + self.codebook_size]


class FishS2DecodeSession:
    """Decode state of one batch of rows on one model, the frame step over it, and its lock.

    Typical use (what ``generate`` does; hold :attr:`lock` around it)::

        session.prepare(batch_size=B, cache_length=L, window=10, sampler=sampler, device=d, dtype=t)
        session.start(attention_mask, sampler)  # a new batch: padding mask [B, T], sampling parameters
        session.draw_noise(); session.prefill_frame(input_ids, audio_codes)
        step = session.frame_step(compile=False)
        while ...: session.draw_noise(); step()

    Buffers (all ``[B, ...]`` and static while the shapes stay): ``slow_cache`` / ``fast_cache`` (KV caches),
    ``attention_mask`` ``[B, cache_length]`` (bool: True = prompt or generated slot, False = left padding),
    ``slot_index`` (``0 … cache_length-1``), ``slot`` (0-d cache slot of the next slow-AR input),
    ``position_ids`` ``[B, 1]``, ``frame`` ``[B, 1 + num_codebooks]`` (the last frame), ``recent``
    ``[B, window]`` (semantic tokens of the last decode frames), ``frame_index`` (0-d, frames made so far),
    ``lengths`` ``[B]`` (frames kept per row), ``finished`` ``[B]``, ``sequences``
    ``[B, num_codebooks, cache_length]`` (frame ``f`` in column ``f``), ``noise`` ``[B, noise_layout.width]``
    (only when sampling) and ``sampler`` (per-row sampling parameters).
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.lock = threading.RLock()
        self.key: tuple | None = None
        self._compiled_steps: dict[tuple, Callable[[], None]] = {}
        self._host_noise: torch.Tensor | None = None
        self.release()

    @functools.cached_property
    def noise_layout(self) -> NoiseLayout:
        """Where each draw finds its uniforms in :attr:`noise`."""
        config = self.model.config
        return NoiseLayout(config.text_config.vocab_size, config.codebook_size, config.num_codebooks)

    def __reduce__(self):
        # A copy or a pickle of the model gets a fresh, empty session: the lock and caches stay with this one.
        return (FishS2DecodeSession, (self.model,))

    # ----------------------------------------------------------------------------------------------------
    # Buffers
    # ----------------------------------------------------------------------------------------------------

    def prepare(
        self,
        *,
        batch_size: int,
        cache_length: int,
        window: int,
        sampler: FishS2Sampler,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        """Allocate the buffers for these shapes, or keep the current ones when the shapes are the same
        (same buffers: no recompile, no new CUDA graph). ``sampler`` gives ``do_sample`` and the token ids;
        its values are taken by :meth:`start`."""
        self.use_cpu_weight_layout(device, dtype)
        key = (batch_size, cache_length, window, sampler.do_sample, torch.device(device), dtype)
        if key == self.key:
            return
        self.release()  # free the old caches before allocating new ones
        model, config = self.model, self.model.config
        text_config = config.text_config
        self.slow_cache = StaticCache(config=text_config, max_cache_len=cache_length)
        self.slow_cache.early_initialization(
            batch_size, text_config.num_key_value_heads, text_config.head_dim, dtype, device
        )
        self.fast_cache = model.audio_decoder.make_fast_cache(batch_size, device=device, dtype=dtype)

        def buffer(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        self.attention_mask = buffer(batch_size, cache_length, dtype=torch.bool)
        self.slot_index = torch.arange(cache_length, device=device)
        self.slot = buffer(1)
        self.position_ids = buffer(batch_size, 1)
        self.frame = buffer(batch_size, 1 + config.num_codebooks)
        self.recent = buffer(batch_size, window)
        self.frame_index = buffer()
        self.lengths = buffer(batch_size)
        self.finished = buffer(batch_size, dtype=torch.bool)
        self.sequences = buffer(batch_size, config.num_codebooks, cache_length)
        self.noise = buffer(batch_size, self.noise_layout.width, dtype=dtype) if sampler.do_sample else None
        self.sampler = sampler.with_rows(batch_size)
        for tensor in (
            self.attention_mask, self.slot_index, self.slot, self.position_ids, self.frame, self.recent, self.frame_index,
            self.lengths, self.finished, self.sequences, self.noise, *self.sampler.tensors(),
        ):  # fmt: skip
            if tensor is not None:
                torch._dynamo.mark_static_address(tensor)
        self.key = key

    def use_cpu_weight_layout(self, device: torch.device, dtype: torch.dtype) -> None:
        """Decoding in fp32 on the CPU reads column-major weights faster: lay them out so (once), unless the
        model's ``cpu_weight_layout`` is off; otherwise put them back row-major (a model cast to bf16 after its
        fp32 layout was made would read them ~3x slower). ``train()`` undoes it; the state dict never shows it."""
        cpu_fp32 = torch.device(device).type == "cpu" and dtype == torch.float32
        self.model.optimize_for_cpu_decoding(enable=cpu_fp32 and self.model.cpu_weight_layout)

    def release(self) -> None:
        """Free every buffer (the KV caches above all); the compiled steps are kept for the next shapes."""
        self.key = None
        self.slow_cache = self.fast_cache = self.sampler = self.noise = None
        self.attention_mask = self.slot_index = None
        self.slot = self.position_ids = self.frame = self.recent = None
        self.frame_index = self.lengths = self.finished = self.sequences = None
        self._host_noise = None

    def start(self, attention_mask: torch.Tensor, sampler: FishS2Sampler) -> None:
        """Begin a new batch: the prompt padding mask ``[B, T]`` and the sampling parameters to copy in."""
        length = attention_mask.shape[1]
        self.attention_mask.fill_(True)
        self.attention_mask[:, :length].copy_(attention_mask)
        self.slot.fill_(length)
        self.position_ids.copy_(attention_mask.sum(-1, keepdim=True))
        for tensor in (self.frame, self.recent, self.frame_index, self.lengths, self.finished):
            tensor.zero_()
        self.sampler.copy_(sampler)

    def draw_noise(self, *, on_cpu: bool = False) -> None:
        """Fill the noise buffer for the next frame (nothing when greedy). ``on_cpu`` draws an accelerator's
        noise from the CPU generator, so a seeded run draws the same numbers as on CPU (one copy per frame)."""
        noise = self.noise
        if noise is None:
            return
        if not on_cpu or noise.device.type == "cpu":
            noise.uniform_()
            return
        if self._host_noise is None:
            self._host_noise = torch.empty(
                noise.shape, dtype=noise.dtype, pin_memory=torch.cuda.is_available()
            )
        noise.copy_(self._host_noise.uniform_(), non_blocking=True)

    # ----------------------------------------------------------------------------------------------------
    # The frame: prefill (eager) and the decode step (the compiled unit)
    # ----------------------------------------------------------------------------------------------------

    def prefill_frame(self, input_ids: torch.Tensor, audio_codes: torch.Tensor) -> None:
        """Run the prompt through the slow AR and make frame 0 (it does not enter the RAS window)."""
        length = input_ids.shape[1]
        output = self.model(
            input_ids=input_ids,
            audio_codes=audio_codes,
            attention_mask=self.attention_mask,
            past_key_values=self.slow_cache,
            cache_position=torch.arange(length, device=input_ids.device),
            use_cache=True,
            logits_to_keep=1,
        )
        token, codes = self.sample_frame(output.logits[:, -1], output.last_hidden_state[:, -1])
        self.record_frame(token, codes, remember=False)

    def decode_frame(self) -> None:
        """One frame step: feed the last frame to the slow AR, then sample the next frame. In place only."""
        model, frame = self.model, self.frame
        # The step's 4-D mask [B, 1, 1, cache_length]: a prompt or generated slot up to this one (what
        # create_causal_mask makes of the 2-D mask, in two ops instead of some forty).
        mask = ((self.slot_index <= self.slot) & self.attention_mask)[:, None, None]
        output = model(
            inputs_embeds=model.embed_inputs(frame[:, :1], frame[:, 1:, None]),
            attention_mask=mask,
            position_ids=self.position_ids,
            past_key_values=self.slow_cache,
            cache_position=self.slot,
            use_cache=True,
            logits_to_keep=1,
        )
        self.slot.add_(1)
        self.position_ids.add_(1)
        token, codes = self.sample_frame(output.logits[:, -1], output.last_hidden_state[:, -1])
        self.record_frame(token, codes, remember=True)

    def sample_frame(self, logits: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Semantic token from the slow logits ``[B, V]``, then the residual codes from the fast transformer fed
        the slow hidden state ``[B, D]``: returns ``token [B]`` and ``codes [B, num_codebooks]``."""
        config, sampler, fast, noise = self.model.config, self.sampler, self.model.audio_decoder, self.noise
        layout = self.noise_layout

        def uniforms(view: Callable[..., torch.Tensor], *args: int) -> torch.Tensor | None:
            return None if noise is None else view(noise, *args)

        token = sampler.sample_semantic_token(
            logits, self.recent, uniforms(layout.semantic), uniforms(layout.ras)
        )
        code = (token - config.semantic_start_token_id).clamp(0, config.codebook_size - 1)
        codes = [code]
        # Fast positions 0 (the slow hidden state) and 1 (the semantic code) in one pass, then one per codebook.
        inputs, position = torch.stack([fast.project_in(hidden), fast.embed_codes(code)], dim=1), 0
        shortcut = fast.can_step(self.fast_cache)  # asked once per frame, not once per position
        for index in range(1, config.num_codebooks):
            fast_logits = fast.decode_step(inputs, position, self.fast_cache, shortcut=shortcut)
            code = sampler.sample_code(fast_logits, uniforms(layout.codebook, index))
            codes.append(code)
            inputs, position = fast.embed_codes(code)[:, None], index + 1
        return token, torch.stack(codes, dim=1)

    def record_frame(self, token: torch.Tensor, codes: torch.Tensor, *, remember: bool) -> None:
        """Store the frame, count it for rows still running (never the ``<|im_end|>`` frame), update RAS."""
        is_end = token == self.model.config.eos_token_id
        self.lengths.add_(~self.finished & ~is_end)
        self.finished.logical_or_(is_end)
        self.sequences.index_copy_(2, self.frame_index.view(1), codes[:, :, None])
        self.frame[:, 0].copy_(token)
        self.frame[:, 1:].copy_(codes)
        window = self.recent.shape[1]
        if remember and window:
            self.recent.index_copy_(1, ((self.frame_index - 1) % window).view(1), token[:, None])
        self.frame_index.add_(1)

    def frame_step(
        self, compile: bool = False, compile_config: CompileConfig | None = None
    ) -> Callable[[], None]:
        """:meth:`decode_frame`, eager or compiled (cached per compile settings, so later batches reuse it).

        ``fullgraph`` is always on: a graph break inside the step is a bug. Without a ``compile_config`` the
        backend is inductor, with CUDA graphs (``mode="reduce-overhead"``) on CUDA and inductor's C++ wrapper
        on other devices: a frame is ~230 matrix products and ~200 fused kernels, and calling them from the
        generated Python wrapper cost ~7 ms of a ~50 ms CPU frame (the C++ wrapper: ~10% faster frames for
        ~25 s more of a first compile; docs/speed.md).
        """
        if not compile:
            return self.decode_frame
        quantizer = getattr(self.model, "hf_quantizer", None)
        if quantizer is not None and not quantizer.is_compileable:
            raise ValueError(
                f"compile=True does not work with {type(quantizer).__name__} quantization (its kernels do not "
                "compile); generate with compile=False"
            )
        if compile_config is None:
            if self.model.device.type == "cuda":
                backend, mode, options = "inductor", "reduce-overhead", None
            else:
                backend, mode, options = "inductor", None, {"cpp_wrapper": True}
        else:
            backend, mode, options = compile_config.backend, compile_config.mode, compile_config.options
        key = (backend, mode, repr(options))
        if key not in self._compiled_steps:
            settings = {"mode": mode} if options is None else {"options": options}  # torch takes one of them
            self._compiled_steps[key] = torch.compile(
                self.decode_frame, fullgraph=True, backend=backend, **settings
            )
        return self._compiled_steps[key]
