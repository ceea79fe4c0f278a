"""The engine's decode session: a fixed set of slots that requests enter and leave between frames.

Each slot is one row of every decode buffer: a row of the slow KV cache with its **own write position**,
its own RoPE position (the same number: a request's tokens occupy cache slots ``0 … n-1`` of its row, exactly
where a solo ``generate`` puts them), its last frame, its RAS window, its sampling parameters and its noise.
A request that joins takes a free row and overwrites it from slot 0; nothing is reallocated and nothing is
cleared, because its attention mask only ever reaches slots it wrote itself.

One frame step runs the rows ``0 … k-1`` together (``k`` = the highest busy slot + 1; free rows in between
compute a frame that is thrown away) and attends to the first ``L`` cache slots, ``L`` = the longest busy row
rounded up to :data:`ATTENDED_LENGTH_BUCKET`, so the attention cost follows the live requests, not
``max_context``. The model's own pieces do the work: ``embed_inputs``, the slow transformer (the model's
``forward`` with a 4-D mask, per-row ``position_ids`` and :class:`SlotKVCache`), and the decode session's
``sample_frame`` (the reference sampler with per-row parameters, the noise layout, the fast transformer).
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, StaticCache

from ..modeling.decode_session import FishS2DecodeSession
from ..modeling.sampling import FishS2Sampler

if TYPE_CHECKING:
    from transformers import GenerationConfig

    from ..modeling import FishS2ForConditionalGeneration

ATTENDED_LENGTH_BUCKET = 256
"""A step attends to the first ``L`` cache slots, ``L`` a multiple of this (fewer distinct shapes)."""

_PARAMETERS = ("temperature", "top_p", "top_k", "ras_temperature", "ras_top_p", "repetition_penalty")


class _Selection:
    """What the next forward pass reads and writes: its rows, each row's new cache slots, the attended length."""

    def __init__(self) -> None:
        self.rows = slice(0, 0)
        self.write_index: torch.Tensor | None = None  # [n, q]
        self.attended = 0


class _SlotLayer(CacheLayerMixin):
    """One layer's keys/values ``[num_slots, kv_heads, max_context, head_dim]``, written per row."""

    is_compileable = True

    def __init__(
        self, selection: _Selection, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype
    ):
        super().__init__()
        self.selection = selection
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.max_cache_len = shape[2]
        self.device = device
        self.is_initialized = True
        torch._dynamo.mark_static_address(self.keys)
        torch._dynamo.mark_static_address(self.values)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Never needed: the buffers exist from the start (required by the abstract base)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        selection = self.selection
        keys, values = self.keys[selection.rows], self.values[selection.rows]
        index = selection.write_index[:, None, :, None].expand_as(key_states)
        keys.scatter_(2, index, key_states)
        values.scatter_(2, index, value_states)
        return keys[:, :, : selection.attended], values[:, :, : selection.attended]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.selection.attended, 0

    def get_seq_length(self) -> int:
        """Rows hold different lengths; callers always pass per-row ``position_ids`` and a 4-D mask."""
        return 0

    def get_max_length(self) -> int:
        return self.max_cache_len


class SlotKVCache(Cache):
    """Slow-AR cache with one row per slot and per-row write positions (a transformers ``Cache``).

    :meth:`select` says which rows the next forward pass covers, where each row writes its new keys/values
    and how many slots attention reads; the model is then called with that view's ``position_ids`` and a
    4-D boolean mask (transformers passes 4-D masks through unchanged).
    """

    def __init__(
        self, model: FishS2ForConditionalGeneration, num_slots: int, max_context: int, device, dtype
    ) -> None:
        config = model.config.text_config
        self.selection = _Selection()
        shape = (num_slots, config.num_key_value_heads, max_context, config.head_dim)
        super().__init__(
            layers=[_SlotLayer(self.selection, shape, device, dtype) for _ in range(config.num_hidden_layers)]
        )

    def select(self, rows: slice, write_index: torch.Tensor, attended: int) -> None:
        self.selection.rows = rows
        self.selection.write_index = write_index
        self.selection.attended = attended

    def nbytes(self) -> int:
        return sum(layer.keys.nbytes + layer.values.nbytes for layer in self.layers)


class FishS2SlotSession(FishS2DecodeSession):
    """The decode session of ``num_slots`` rows that requests enter (:meth:`prefill`) and leave (:meth:`free`)
    independently, one frame step (:meth:`step`) at a time.

    A row's life: :meth:`prefill` runs its prompt through the slow AR and keeps the last position's logits and
    hidden state; the next :meth:`step` samples frame 0 from them *together with* the other rows' frames (one
    fast-transformer pass for everybody: an admission costs only its slow-AR forward), and every later step
    decodes the row's previous frame. Before each of a sampled row's frames the caller fills its noise from the
    request's own generator (:meth:`draw_row_noise`).

    It reuses the session's :meth:`sample_frame` (pointing :attr:`sampler`, :attr:`noise`, :attr:`recent` and
    :attr:`fast_cache` at the rows of the step) and :meth:`frame_step` (the compiled :meth:`decode_frame`).
    The static-batch entry points of the base class (``prepare``, ``start``, ``prefill_frame``,
    ``draw_noise``) do not apply to slots. Single-threaded: only the engine's decode thread calls it.
    """

    def __init__(
        self,
        model: FishS2ForConditionalGeneration,
        *,
        num_slots: int,
        max_context: int,
        max_ras_window: int,
        compile: bool = False,
    ) -> None:
        super().__init__(model)
        config = model.config
        device, dtype = model.device, model.text_model.model.norm.weight.dtype
        self.num_slots, self.max_context = num_slots, max_context
        self.device, self.dtype = device, dtype
        self.use_cpu_weight_layout(device, dtype)
        self.slot_cache = SlotKVCache(model, num_slots, max_context, device, dtype)
        self._fast_caches = _row_prefix_caches(
            model.audio_decoder.make_fast_cache(num_slots, device=device, dtype=dtype), num_slots
        )
        # host-side state of each slot
        self.busy = [False] * num_slots
        self.fresh = [False] * num_slots  # prefilled, frame 0 not sampled yet
        self.cache_lengths = [0] * num_slots  # tokens in the row's cache (= its next position)
        self.sampling = [False] * num_slots
        self.penalised = [False] * num_slots  # repetition_penalty != 1

        def buffer(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        vocab_size = config.text_config.vocab_size
        self.positions = buffer(num_slots)  # next cache slot (and RoPE position) of each row
        self.decoding = buffer(num_slots, dtype=torch.bool)  # busy rows past frame 0: they advance
        self.frame = buffer(num_slots, 1 + config.num_codebooks)
        self.prefill_logits = buffer(num_slots, vocab_size, dtype=dtype)
        self.prefill_hidden = buffer(num_slots, config.text_config.dim, dtype=dtype)
        self.row_recent = buffer(num_slots, max_ras_window)
        self.window = buffer(num_slots)
        self.decoded = buffer(num_slots)  # decode frames made (frame 0 is not one)
        self.slot_index = torch.arange(max_context, device=device)
        self.row_noise = buffer(num_slots, self.noise_layout.width, dtype=dtype)
        self.row_sampling = buffer(num_slots, dtype=torch.bool)
        self.parameters = FishS2Sampler.build(
            do_sample=True, temperature=1.0, top_p=1.0, top_k=None, ras_temperature=1.0, ras_top_p=1.0,
            repetition_penalty=1.0, vocab_size=vocab_size, semantic_start_token_id=config.semantic_start_token_id,
            semantic_end_token_id=config.semantic_end_token_id, eos_token_id=config.eos_token_id,
            device=device, dtype=dtype, batch_size=num_slots,
        )  # fmt: skip
        for tensor in (
            self.positions, self.decoding, self.frame, self.prefill_logits, self.prefill_hidden, self.row_recent,
            self.window, self.decoded, self.slot_index, self.row_noise, self.row_sampling,
            *self.parameters.tensors(),
        ):  # fmt: skip
            torch._dynamo.mark_static_address(tensor)
        self._step_rows = num_slots
        self._step_decode = True
        self._attended_slots = self.slot_index
        self._step = self.frame_step(compile, model.generation_config.compile_config)
        self._compiled = compile

    # ------------------------------------------------------------------------------------------------
    # Slots
    # ------------------------------------------------------------------------------------------------

    def kv_bytes(self) -> int:
        return self.slot_cache.nbytes()

    def rows_in_use(self) -> int:
        """``k``: a frame step covers rows ``0 … k-1`` (the highest busy slot + 1)."""
        return max((slot + 1 for slot, busy in enumerate(self.busy) if busy), default=0)

    def next_free_slot(self) -> int | None:
        """The lowest free slot (keeps busy rows packed at the front, so steps cover few rows)."""
        return next((slot for slot, busy in enumerate(self.busy) if not busy), None)

    def free(self, slot: int) -> None:
        """The slot's request has left; the next one overwrites its row."""
        self.busy[slot] = self.fresh[slot] = False
        self.decoding[slot] = False

    def draw_row_noise(self, slot: int, generator: torch.Generator) -> None:
        """The row's uniforms for its next frame, from its request's generator: one ``uniform_`` of the
        noise layout's width per frame, as the solo loop's ``session.draw_noise()``."""
        self.row_noise[slot].uniform_(generator=generator)

    @torch.no_grad()
    def prefill(
        self, slot: int, input_ids: torch.Tensor, audio_codes: torch.Tensor, options: GenerationConfig
    ) -> None:
        """Start ``slot`` on a prompt (``input_ids [T]``, ``audio_codes [C, T]``) with a request's checked
        ``options``: run the prompt through the slow AR into the row's cache slots ``0 … T-1`` and keep what
        frame 0 is sampled from (at the next :meth:`step`)."""
        length = input_ids.shape[-1]
        self._configure(slot, options)
        attended = self._attended(length)
        positions = self.slot_index[:length]
        self.slot_cache.select(slice(slot, slot + 1), positions[None], attended)
        output = self.model(
            input_ids=input_ids[None].to(self.device),
            audio_codes=audio_codes[None].to(self.device),
            attention_mask=(self.slot_index[None, :attended] <= positions[:, None])[None, None],
            position_ids=positions[None],
            past_key_values=self.slot_cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.prefill_logits[slot] = output.logits[0, -1]
        self.prefill_hidden[slot] = output.last_hidden_state[0, -1]
        self.positions[slot] = length
        self.cache_lengths[slot] = length
        self.decoding[slot] = False
        self.busy[slot] = self.fresh[slot] = True

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """One frame for every busy row among ``0 … k-1``: frame 0 of freshly prefilled rows, the next frame
        of the others. Returns the frames ``[k, 1 + C]`` (token, codes) on the CPU; free rows' are meaningless.

        Eager, ``k`` follows the busy slots and the all-greedy / no-penalty batches take the scalar paths;
        compiled, every step covers all rows with per-row tensors (one graph whatever the mix of requests),
        and the attended length reaches the graph as the size of a tensor (dynamic, not one graph per length).
        """
        rows = self.num_slots if self._compiled else self.rows_in_use()
        decoding = [self.busy[slot] and not self.fresh[slot] for slot in range(rows)]
        longest = max((self.cache_lengths[slot] for slot in range(rows) if decoding[slot]), default=0)
        self._use_rows(rows, per_row=self._compiled)
        self._step_rows = rows
        self._step_decode = self._compiled or any(decoding)
        self._attended_slots = self.slot_index[: self._attended(longest + 1)]
        self._step()
        for slot in range(rows):
            self.cache_lengths[slot] += decoding[slot]
            self.fresh[slot] = False
        self.decoding[:rows].copy_(torch.tensor(self.busy[:rows]))
        return self.frame[:rows].to("cpu", copy=True)

    def decode_frame(self) -> None:
        """The frame step proper (what :meth:`frame_step` compiles): in-place updates of the buffers only."""
        rows, attended = self._step_rows, self._attended_slots.shape[0]
        frame, positions, decoding = self.frame[:rows], self.positions[:rows], self.decoding[:rows]
        logits, hidden = self.prefill_logits[:rows], self.prefill_hidden[:rows]
        if self._step_decode:  # rows that are not decoding compute a throw-away row here
            self.slot_cache.select(slice(0, rows), positions[:, None], attended)
            output = self.model(
                inputs_embeds=self.model.embed_inputs(frame[:, :1], frame[:, 1:, None]),
                attention_mask=(self._attended_slots[None] <= positions[:, None])[:, None, None],
                position_ids=positions[:, None],
                past_key_values=self.slot_cache,
                use_cache=True,
                logits_to_keep=1,
            )
            positions.add_(decoding)
            logits = torch.where(decoding[:, None], output.logits[:, -1], logits)
            hidden = torch.where(decoding[:, None], output.last_hidden_state[:, -1], hidden)
        token, codes = self.sample_frame(logits, hidden)
        self._remember(rows, token)
        frame[:, 0] = token
        frame[:, 1:] = codes

    def release(self) -> None:
        """Free every buffer, the slow KV cache above all (the engine calls this at shutdown)."""
        super().release()
        self.slot_cache = self._fast_caches = self.parameters = self.row_noise = None
        self.prefill_logits = self.prefill_hidden = self.row_recent = None

    # ------------------------------------------------------------------------------------------------

    def _configure(self, slot: int, options: GenerationConfig) -> None:
        """Write a request's sampling options into its row (greedy rows keep neutral values)."""
        sampling = bool(options.do_sample)
        values = {name: getattr(options, name) for name in _PARAMETERS} if sampling else {}
        values["repetition_penalty"] = options.repetition_penalty
        values["top_k"] = values.get("top_k") or self.model.config.text_config.vocab_size
        for name in _PARAMETERS:
            getattr(self.parameters, name)[slot] = values.get(name, 1.0)
        self.row_sampling[slot] = sampling
        self.window[slot] = options.ras_window_size
        self.row_recent[slot] = 0
        self.decoded[slot] = 0
        self.sampling[slot] = sampling
        self.penalised[slot] = options.repetition_penalty != 1.0

    def _attended(self, length: int) -> int:
        return min(math.ceil(length / ATTENDED_LENGTH_BUCKET) * ATTENDED_LENGTH_BUCKET, self.max_context)

    def _use_rows(self, rows: int, per_row: bool) -> None:
        """Point what :meth:`sample_frame` reads at rows ``0 … rows-1``. ``do_sample`` and the penalty switch
        are plain values when the busy rows agree (no draws for an all-greedy batch, no penalty pass when
        nobody asked for one), else per row; ``per_row`` always uses the per-row form."""
        busy = [slot for slot in range(rows) if self.busy[slot]] or [0]
        kinds = {self.sampling[slot] for slot in busy}
        do_sample = kinds.pop() if len(kinds) == 1 and not per_row else self.row_sampling[:rows]
        self.sampler = replace(
            self.parameters,
            do_sample=do_sample,
            use_repetition_penalty=per_row or any(self.penalised[slot] for slot in busy),
            **{name: getattr(self.parameters, name)[:rows] for name in _PARAMETERS},
        )
        self.noise = None if do_sample is False else self.row_noise[:rows]
        self.recent = self.row_recent[:rows]
        self.fast_cache = self._fast_caches[rows - 1]

    def _remember(self, rows: int, token: torch.Tensor) -> None:
        """RAS window: decode frame ``d`` of a row goes to column ``d % window`` (as in ``generate``; frame 0
        never enters it); rows with window 0 keep an all-zero window (zeros are never semantic tokens)."""
        window, decoded, decoding = self.window[:rows], self.decoded[:rows], self.decoding[:rows]
        recent = self.row_recent[:rows]
        index = (decoded % window.clamp(min=1))[:, None]
        keep = recent.gather(1, index)[:, 0]
        recent.scatter_(1, index, torch.where(decoding & (window > 0), token, keep)[:, None])
        decoded.add_(decoding)


def _row_prefix_caches(cache: StaticCache, num_slots: int) -> list[StaticCache]:
    """``cache`` (``num_slots`` rows) seen as caches of its first 1, 2, … ``num_slots`` rows, sharing its memory:
    the fast transformer needs a cache with exactly as many rows as the step, and its keys/values are
    rewritten from position 0 every frame, so any row prefix can serve."""
    views = []
    for rows in range(1, num_slots + 1):
        view = copy.copy(cache)
        view.layers = []
        for layer in cache.layers:
            layer_view = copy.copy(layer)
            layer_view.keys, layer_view.values = layer.keys[:rows], layer.values[:rows]
            layer_view.batch_size = rows
            view.layers.append(layer_view)
        views.append(view)
    return views
