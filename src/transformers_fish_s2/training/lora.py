"""Default LoRA targets for S2's fused projections.

Each transformer block has a fused ``attention.wqkv`` (query, key and value in one ``nn.Linear``), ``attention.wo``
and a SwiGLU ``feed_forward.{w1, w2, w3}``; the slow AR's blocks are ``text_model.model.layers.N`` and the fast
AR's are ``audio_decoder.layers.N``. LoRA on ``wqkv`` adapts queries, keys and values together (one low-rank
update of the fused matrix), which is what the authors' own LoRA does.

Not targeted by default: the slow AR's embedding table, because the released model ties its output head to it
and the head is applied as ``F.linear(hidden, embeddings.weight)`` — an embedding adapter would change the
inputs but not the head, and a merged model would change both; and the fast AR's ``output`` head and
embeddings, which the authors only adapt in their fast-only recipe (pass your own ``LoraConfig`` for that).
"""

from __future__ import annotations

from typing import Literal

from peft import LoraConfig

from . import defaults

_BLOCK_LINEARS = r"layers\.\d+\.(attention\.(wqkv|wo)|feed_forward\.(w1|w2|w3))"
LORA_TARGETS: dict[str, str] = {
    "slow": rf"text_model\.model\.{_BLOCK_LINEARS}",
    "fast": rf"audio_decoder\.{_BLOCK_LINEARS}",
    "both": rf"(text_model\.model|audio_decoder)\.{_BLOCK_LINEARS}",
}
"""``peft`` ``target_modules`` regexes (matched against full module names) for each part of the model."""

Part = Literal["slow", "fast", "both"]


def lora_config(
    part: Part = "both",
    *,
    r: int = defaults.LORA_RANK,
    alpha: int = defaults.LORA_ALPHA,
    dropout: float = 0.0,
) -> LoraConfig:
    """A ``LoraConfig`` on the attention and MLP projections of the slow AR, the fast AR, or both.

    The defaults are the authors' LoRA recipe (rank 8, alpha 16, both transformers). The slow AR decides what is
    said and the prosody; the fast AR fills in the acoustic detail of each frame, so a voice adapter benefits
    from both and a text/language adapter mostly from the slow AR.
    """
    if part not in LORA_TARGETS:
        raise ValueError(f"part must be one of {sorted(LORA_TARGETS)}, got {part!r}")
    if r < 1:
        raise ValueError(f"r (the LoRA rank) must be at least 1, got {r}")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGETS[part])
