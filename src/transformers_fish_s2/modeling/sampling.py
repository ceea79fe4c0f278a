"""The reference sampler of Fish Audio S2 (SPEC §4.1.4), batched over rows.

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
parameters held as 0-d tensors of that dtype (so 0.8 becomes 0.80078125 under bf16, as there).
The functions have static shapes and no data-dependent Python branches, so they can live inside a
compiled graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def logits_to_probs(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, top_k: torch.Tensor
) -> torch.Tensor:
    """Filtered, tempered probabilities over the last dim of ``logits [..., V]``.

    ``top_k`` is a 0-d integer tensor (``V`` disables it); ``temperature``/``top_p`` are 0-d tensors
    in the logits' dtype. Masking decisions use the untempered softmax, see the module docstring.
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


def apply_repetition_penalty(logits: torch.Tensor, recent: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty restricted to ``recent [B, W]`` token ids of ``logits [B, V]``.

    A token seen in the window has its logit divided by ``penalty`` when positive and multiplied by
    it when negative. Repeated ids in the window are penalised once.
    """
    seen = torch.gather(logits, -1, recent)
    penalised = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, recent, penalised)


@dataclass
class FishS2Sampler:
    """Sampling parameters of one ``generate`` call, as tensors on the model's device and dtype.

    Built once per call by :meth:`build`; the compiled frame step receives it as an argument, so
    changing temperature, top-p or top-k between calls does not recompile (only ``do_sample`` and
    switching the repetition penalty on/off change the graph).
    """

    do_sample: bool
    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor
    ras_temperature: torch.Tensor
    ras_top_p: torch.Tensor
    repetition_penalty: float
    semantic_start_token_id: int
    semantic_end_token_id: int
    logit_bias: torch.Tensor  # [V]: 0 for semantic ids and <|im_end|>, -inf elsewhere

    @classmethod
    def build(
        cls,
        *,
        do_sample: bool,
        temperature: float,
        top_p: float,
        top_k: int | None,
        ras_temperature: float,
        ras_top_p: float,
        repetition_penalty: float,
        vocab_size: int,
        semantic_start_token_id: int,
        semantic_end_token_id: int,
        eos_token_id: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> FishS2Sampler:
        def scalar(value: float) -> torch.Tensor:
            return torch.tensor(value, device=device, dtype=dtype)

        bias = torch.full((vocab_size,), float("-inf"), device=device, dtype=dtype)
        bias[semantic_start_token_id : semantic_end_token_id + 1] = 0
        bias[eos_token_id] = 0
        return cls(
            do_sample=do_sample,
            temperature=scalar(temperature),
            top_p=scalar(top_p),
            top_k=torch.tensor(top_k if top_k else vocab_size, device=device),
            ras_temperature=scalar(ras_temperature),
            ras_top_p=scalar(ras_top_p),
            repetition_penalty=repetition_penalty,
            semantic_start_token_id=semantic_start_token_id,
            semantic_end_token_id=semantic_end_token_id,
            logit_bias=bias,
        )

    def is_semantic(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens >= self.semantic_start_token_id) & (tokens <= self.semantic_end_token_id)

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
        if self.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, recent, self.repetition_penalty)
        biased = logits + self.logit_bias
        if not self.do_sample:
            return torch.argmax(biased, dim=-1)
        normal = exponential_race(
            logits_to_probs(biased, self.temperature, self.top_p, self.top_k), uniform_normal
        )
        fallback = exponential_race(
            logits_to_probs(biased, self.ras_temperature, self.ras_top_p, self.top_k), uniform_ras
        )
        repeated = (recent == normal[:, None]).any(dim=-1) & self.is_semantic(normal)
        return torch.where(repeated, fallback, normal)

    def sample_code(self, logits: torch.Tensor, uniform: torch.Tensor | None) -> torch.Tensor:
        """Residual code per row from fast logits ``[B, codebook_size]`` (no mask, no RAS)."""
        if not self.do_sample:
            return torch.argmax(logits, dim=-1)
        return exponential_race(logits_to_probs(logits, self.temperature, self.top_p, self.top_k), uniform)
