"""The reference sampler of Fish Audio S2 (docs/reference-behaviour.md, sampling order), batched over rows.

It differs from transformers' logits processors on purpose, so that a seeded run reproduces the
authors' draws bit for bit:

* top-k and top-p are decided on the *untempered* distribution, and the token whose inclusive
  cumulative probability crosses ``top_p`` is itself removed (rank 0 is always kept);
* temperature is applied afterwards, then a softmax;
* the draw is an exponential race ``argmax(probs / -log(u))`` over uniform noise ``u`` that the
  caller supplies (one uniform per vocabulary entry), which makes the RNG consumption explicit;
* the semantic token uses repetition-aware sampling (RAS): a second candidate is always drawn with
  ``ras_temperature`` / ``ras_top_p``, and it replaces the normal draw when that draw is a semantic
  token already present in the window of recent tokens.

Everything runs in the dtype of the logits (the model dtype, like the reference), with the
parameters held as tensors of that dtype (so 0.8 becomes 0.80078125 under bf16, as there): 0-d for
one value for all rows, ``[B, 1]`` for one value per row. The functions have static shapes and no
data-dependent Python branches, so they can live inside a compiled graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from .generation_options import FISH_S2_GENERATION_DEFAULTS

if TYPE_CHECKING:
    from transformers import GenerationConfig

    from .configuration_fish_s2 import FishS2Config


def semantic_token_mask(tokens: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Where ``tokens`` are ``<|semantic:k|>`` ids (the inclusive range ``start … end``)."""
    return (tokens >= start) & (tokens <= end)


def logits_to_probs(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, top_k: torch.Tensor
) -> torch.Tensor:
    """Filtered, tempered probabilities over the last dim of ``logits [..., V]``.

    ``top_k`` is an integer tensor (``V`` disables it); ``temperature``/``top_p`` are tensors in the logits'
    dtype; each is 0-d or ``[B, 1]`` (one per row of ``logits [B, V]``). Masking decisions use the
    untempered softmax, see the module docstring.
    """
    sorted_logits, sorted_indices = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    rank = torch.arange(logits.shape[-1], device=logits.device)
    remove_sorted = ((cumulative > top_p) | (rank >= top_k)) & (rank != 0)
    remove = remove_sorted.scatter(-1, sorted_indices, remove_sorted)
    filtered = torch.where(remove, float("-inf"), logits)
    return torch.softmax(filtered / torch.clamp(temperature, min=1e-5), dim=-1)


def exponential_race(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Draw one index per row of ``probs [..., V]``: ``argmax(probs / -log(uniform))``.

    Equivalent to multinomial sampling, but the randomness is the caller's ``uniform`` tensor (same
    shape and dtype as ``probs``), so the draw is reproducible and needs no host sync.
    """
    return torch.argmax(probs / -torch.log(uniform), dim=-1)


def apply_repetition_penalty(
    logits: torch.Tensor, recent: torch.Tensor, penalty: torch.Tensor
) -> torch.Tensor:
    """transformers' repetition penalty restricted to ``recent [B, W]`` token ids of ``logits [B, V]``.

    A token seen in the window has its logit divided by ``penalty [B, 1]`` (fp32, one per row) when positive
    and multiplied by it when negative, computed in fp32 and rounded once to the logits' dtype (what a Python
    float factor does). Repeated ids in the window are penalised once; a row with penalty 1 is unchanged.
    """
    seen = torch.gather(logits, -1, recent)
    penalised = torch.where(seen > 0, seen / penalty, seen * penalty).to(logits.dtype)
    return logits.scatter(-1, recent, penalised)


@dataclass
class FishS2Sampler:
    """Sampling parameters of a batch: 0-d tensors (one value for all rows) or ``[B, 1]`` (one per row).

    ``temperature``, ``top_p``, ``ras_temperature`` and ``ras_top_p`` are in the model dtype (so 0.8 becomes
    0.80078125 under bf16, as in the reference), ``top_k`` is an integer (the vocabulary size when off),
    ``repetition_penalty`` is fp32. The compiled frame step reads them as tensors, so changing any value between
    calls (or per row) does not recompile; only ``do_sample`` and switching the repetition penalty on or off
    for the whole batch (``use_repetition_penalty``) change the graph.

    ``do_sample`` may also be a ``[B]`` bool tensor (a batch mixing greedy and sampled rows, as the serving
    engine runs): every row is then drawn and the rows where it is False keep their argmax, exactly what they
    get alone with ``do_sample=False``.
    """

    do_sample: bool | torch.Tensor
    use_repetition_penalty: bool
    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor
    ras_temperature: torch.Tensor
    ras_top_p: torch.Tensor
    repetition_penalty: torch.Tensor
    semantic_start_token_id: int
    semantic_end_token_id: int
    logit_bias: torch.Tensor  # [V]: 0 for semantic ids and <|im_end|>, -inf elsewhere

    @classmethod
    def build(
        cls,
        *,
        do_sample: bool,
        temperature: float | Sequence[float] | torch.Tensor,
        top_p: float | Sequence[float] | torch.Tensor,
        top_k: int | None | Sequence[int] | torch.Tensor,
        ras_temperature: float | Sequence[float] | torch.Tensor,
        ras_top_p: float | Sequence[float] | torch.Tensor,
        repetition_penalty: float | Sequence[float] | torch.Tensor,
        vocab_size: int,
        semantic_start_token_id: int,
        semantic_end_token_id: int,
        eos_token_id: int,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int | None = None,
    ) -> FishS2Sampler:
        """Parameters as 0-d tensors (``batch_size=None``: each value a number) or ``[batch_size, 1]`` (each
        value a number for every row, or a sequence / 1-D tensor with one per row). ``top_k`` 0 or None turns
        top-k off."""

        def rows(value, row_dtype: torch.dtype) -> torch.Tensor:
            values = torch.as_tensor(value, dtype=row_dtype)
            if batch_size is not None:
                values = values.reshape(-1, 1).expand(batch_size, 1)
            elif values.dim():
                raise ValueError(f"one value per row needs batch_size; got shape {tuple(values.shape)}")
            return values.to(device=device, copy=True)

        top_k = rows(0 if top_k is None else top_k, torch.long)
        penalty = rows(repetition_penalty, torch.float32)
        bias = torch.full((vocab_size,), float("-inf"), device=device, dtype=dtype)
        bias[semantic_start_token_id : semantic_end_token_id + 1] = 0
        bias[eos_token_id] = 0
        return cls(
            do_sample=do_sample,
            use_repetition_penalty=bool((penalty != 1.0).any()),
            temperature=rows(temperature, dtype),
            top_p=rows(top_p, dtype),
            top_k=torch.where(top_k == 0, vocab_size, top_k),
            ras_temperature=rows(ras_temperature, dtype),
            ras_top_p=rows(ras_top_p, dtype),
            repetition_penalty=penalty,
            semantic_start_token_id=semantic_start_token_id,
            semantic_end_token_id=semantic_end_token_id,
            logit_bias=bias,
        )

    @classmethod
    def from_generation_config(
        cls,
        model_config: FishS2Config,
        generation_config: GenerationConfig,
        *,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int | None = None,
    ) -> FishS2Sampler:
        """The sampler a (checked) generation config asks for, with the model's token ids. A greedy config leaves
        the sampling values unset (so transformers does not warn about them); the sampler holds the defaults."""
        def sampling_value(name: str):
            value = getattr(generation_config, name, None)
            return FISH_S2_GENERATION_DEFAULTS[name] if value is None else value

        return cls.build(
            do_sample=bool(generation_config.do_sample),
            temperature=sampling_value("temperature"),
            top_p=sampling_value("top_p"),
            top_k=sampling_value("top_k"),
            ras_temperature=generation_config.ras_temperature,
            ras_top_p=generation_config.ras_top_p,
            repetition_penalty=generation_config.repetition_penalty,
            vocab_size=model_config.text_config.vocab_size,
            semantic_start_token_id=model_config.semantic_start_token_id,
            semantic_end_token_id=model_config.semantic_end_token_id,
            eos_token_id=model_config.eos_token_id,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
        )

    def with_rows(self, batch_size: int) -> FishS2Sampler:
        """A copy with one row of parameters per batch row (``[batch_size, 1]``; new storage)."""
        return replace(
            self,
            **{
                name: getattr(self, name).reshape(-1, 1).expand(batch_size, 1).clone()
                for name in (
                    "temperature",
                    "top_p",
                    "top_k",
                    "ras_temperature",
                    "ras_top_p",
                    "repetition_penalty",
                )
            },
            logit_bias=self.logit_bias.clone(),
        )

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor the frame step reads (the decode session keeps them at static addresses)."""
        return (
            self.temperature, self.top_p, self.top_k, self.ras_temperature, self.ras_top_p,
            self.repetition_penalty, self.logit_bias,
        )  # fmt: skip

    def copy_(self, other: FishS2Sampler) -> None:
        """Take ``other``'s parameters in place (0-d values fill every row); ``do_sample`` must match."""
        if other.do_sample != self.do_sample:
            raise ValueError("a decode session's do_sample is fixed when it is prepared")
        for ours, new in zip(self.tensors(), other.tensors()):
            ours.copy_(new)
        self.use_repetition_penalty = other.use_repetition_penalty

    def is_semantic(self, tokens: torch.Tensor) -> torch.Tensor:
        return semantic_token_mask(tokens, self.semantic_start_token_id, self.semantic_end_token_id)

    def sample_semantic_token(
        self,
        logits: torch.Tensor,
        recent: torch.Tensor,
        uniform_normal: torch.Tensor | None,
        uniform_ras: torch.Tensor | None,
    ) -> torch.Tensor:
        """Main token per row from slow logits ``[B, V]``, constrained to semantic ids + ``<|im_end|>``.

        ``recent [B, W]`` holds the main tokens of the last W decode frames (RAS window; zeros, which
        are never semantic, mean "empty"). Greedy mode takes the argmax and draws nothing.
        """
        if self.use_repetition_penalty:
            logits = apply_repetition_penalty(logits, recent, self.repetition_penalty)
        biased = logits + self.logit_bias
        if self.do_sample is False:
            return torch.argmax(biased, dim=-1)
        normal = exponential_race(
            logits_to_probs(biased, self.temperature, self.top_p, self.top_k), uniform_normal
        )
        fallback = exponential_race(
            logits_to_probs(biased, self.ras_temperature, self.ras_top_p, self.top_k), uniform_ras
        )
        repeated = (recent == normal[:, None]).any(dim=-1) & self.is_semantic(normal)
        return self._greedy_rows(torch.where(repeated, fallback, normal), biased)

    def sample_code(self, logits: torch.Tensor, uniform: torch.Tensor | None) -> torch.Tensor:
        """Residual code per row from fast logits ``[B, codebook_size]`` (no mask, no RAS)."""
        if self.do_sample is False:
            return torch.argmax(logits, dim=-1)
        drawn = exponential_race(logits_to_probs(logits, self.temperature, self.top_p, self.top_k), uniform)
        return self._greedy_rows(drawn, logits)

    def _greedy_rows(self, drawn: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``drawn``, with the argmax of ``logits`` where a per-row ``do_sample`` is False."""
        if isinstance(self.do_sample, torch.Tensor):
            return torch.where(self.do_sample, drawn, torch.argmax(logits, dim=-1))
        return drawn
