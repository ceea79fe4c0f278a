"""Dual-AR numerics against the authors' recorded outputs (s2-tiny-a), caches, masks, loss and bad input.

Tolerances (fixture README, "Tolerance guidance"):
* fp32: atol 1e-4. Keeping the reference numerics we measure ≤ 1.1e-5 on slow logits and ≤ 8e-6 on fast logits
  (float summation-order noise); an exact-fp32 RoPE table instead moves slow logits by up to 0.031, which
  `test_exact_fp32_rope_table_fails_the_fp32_tolerance` shows this tolerance catches.
* bf16 vs the bf16 reference: atol 2× the reference's own bf16-vs-fp32 gap (slow 0.201, fast 0.139 → 0.40 /
  0.28): bf16 attention kernels (fused sdpa vs the reference's bf16 softmax in the fast AR) round differently.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import INVENTORY, TINY, expected_json, expected_tensors
from transformers import DynamicCache, StaticCache

from transformers_fish_s2 import FishS2Config, FishS2ForConditionalGeneration
from transformers_fish_s2.layers import (
    FishS2RMSNorm,
    apply_interleaved_rope,
    rope_cos_sin,
    rope_inverse_frequencies,
    rotation_tables,
)
from transformers_fish_s2.modeling import modeling_fish_s2

FP32_ATOL = 1e-4
# Same math through another kernel or cache path: only float summation order differs (logits reach |25|).
SAME_MATH_ATOL = 5e-5


def ids() -> torch.Tensor:
    """The recorded case-2 prompt's token ids ``[1, 135]``."""
    return expected_tensors("prompts")["case2_clone.batch0.prompt"][None, 0]


def codes() -> torch.Tensor:
    """The recorded case-2 prompt's codes ``[1, 10, 135]``."""
    return expected_tensors("prompts")["case2_clone.batch0.prompt"][None, 1:]


def positions() -> torch.Tensor:
    """The prompt positions whose fast-AR steps were recorded ``[23]``."""
    return expected_tensors("teacher_forced_fp32")["fast_step_positions"]


def frames() -> torch.Tensor:
    """The frames ``[11, 23]`` (token + codes) at those positions."""
    return expected_tensors("teacher_forced_fp32")["fast_step_frames"]


def load_tiny(dtype=torch.float32, attn="sdpa") -> FishS2ForConditionalGeneration:
    return FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=dtype, attn_implementation=attn).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def fast_step_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Run the fast AR step by step like generation does: position 0 = projected hidden, k = emb(c_{k-1})."""
    decoder = model.audio_decoder
    cache = decoder.make_fast_cache(len(positions()))
    steps = [decoder.decode_step(decoder.project_in(hidden[positions()])[:, None], 0, cache)]
    for k in range(1, decoder.config.num_codebooks):
        steps.append(decoder.decode_step(decoder.embed_codes(frames()[k])[:, None], torch.tensor(k), cache))
    return torch.stack(steps, dim=1)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_fp32_parity_with_reference(attn):
    model = load_tiny(attn=attn)
    out = model(input_ids=ids(), audio_codes=codes())
    hidden = out.last_hidden_state[0]
    diffs = {
        "slow_logits": max_diff(out.logits[0], expected_tensors("teacher_forced_fp32")["slow_logits"]),
        "slow_hidden_normed": max_diff(hidden, expected_tensors("teacher_forced_fp32")["slow_hidden_normed"]),
        "fast_input_hidden": max_diff(
            model.audio_decoder.project_in(hidden),
            expected_tensors("teacher_forced_fp32")["fast_input_hidden"],
        ),
        "fast_step_logits": max_diff(
            fast_step_logits(model, hidden), expected_tensors("teacher_forced_fp32")["fast_step_logits"]
        ),
        # the teacher-forced pass must equal the step-wise one
        "fast_teacher_forced": max_diff(
            model.audio_decoder(hidden[positions()], frames()[1:].T),
            expected_tensors("teacher_forced_fp32")["fast_step_logits"],
        ),
    }
    assert max(diffs.values()) < FP32_ATOL, diffs


@torch.no_grad()
def test_fast_teacher_forced_matches_reference_training_pass(model):
    """The reference trains the fast AR teacher-forced in one pass; feed it the reference's training hidden states."""
    hidden = expected_tensors("teacher_forced_fp32")["train_slow_hidden_normed"][positions()]
    logits = model.audio_decoder(hidden, frames()[1:].T)
    assert max_diff(logits, expected_tensors("teacher_forced_fp32")["train_codebook_logits"]) < FP32_ATOL


@torch.no_grad()
def test_exact_fp32_rope_table_fails_the_fp32_tolerance(model, monkeypatch):
    exact_table = functools.partial(rope_cos_sin, table_dtype=torch.float32)
    monkeypatch.setattr(modeling_fish_s2, "rope_cos_sin", exact_table)
    diff = max_diff(
        model(input_ids=ids(), audio_codes=codes()).logits[0],
        expected_tensors("teacher_forced_fp32")["slow_logits"],
    )
    assert diff > 100 * FP32_ATOL  # README: up to 0.0306


@torch.no_grad()
def test_bf16_parity_with_bf16_reference():
    model = load_tiny(torch.bfloat16)
    out = model(input_ids=ids(), audio_codes=codes())
    hidden = out.last_hidden_state[0]
    slow_atol = 2 * expected_json("teacher_forced")["checks"]["max_abs_diff_bf16_vs_fp32_slow_logits"]
    fast_atol = 2 * expected_json("teacher_forced")["checks"]["max_abs_diff_bf16_vs_fp32_fast_step_logits"]
    slow = max_diff(out.logits[0], expected_tensors("teacher_forced_bf16")["slow_logits"])
    fast = max_diff(
        fast_step_logits(model, hidden), expected_tensors("teacher_forced_bf16")["fast_step_logits"]
    )
    assert out.logits.dtype == torch.bfloat16
    assert slow < slow_atol and fast < fast_atol
    assert (
        max_diff(hidden, expected_tensors("teacher_forced_bf16")["slow_hidden_normed"]) < 0.1
    )  # |hidden| ≤ ~4, a few bf16 ulps


@torch.no_grad()
def test_compiled_rope_table_keeps_the_bf16_rounding():
    """Inductor drops a plain `.to(bfloat16).float()` inside fused kernels; the table must survive compilation."""
    config = FishS2Config().text_config
    positions = torch.arange(4096)[None]
    table = functools.partial(modeling_fish_s2.rotary_cos_sin, config)
    for eager, compiled in zip(table(positions), torch.compile(table)(positions)):
        assert torch.equal(eager, compiled)


@torch.no_grad()
def test_eager_and_sdpa_agree():
    sdpa, eager = load_tiny(attn="sdpa"), load_tiny(attn="eager")
    assert (
        max_diff(
            sdpa(input_ids=ids(), audio_codes=codes()).logits,
            eager(input_ids=ids(), audio_codes=codes()).logits,
        )
        < SAME_MATH_ATOL
    )


@torch.no_grad()
def test_kv_cached_incremental_forward_equals_full_forward(model):
    full = model(input_ids=ids(), audio_codes=codes(), use_cache=False).logits
    out = model(input_ids=ids()[:, :100], audio_codes=codes()[..., :100])
    assert isinstance(out.past_key_values, DynamicCache) and out.past_key_values is out.cache
    pieces = [out.logits]
    for t in range(100, ids().shape[1]):
        pieces.append(
            model(
                input_ids=ids()[:, t : t + 1], audio_codes=codes()[..., t : t + 1], past_key_values=out.cache
            ).logits
        )
    assert max_diff(torch.cat(pieces, dim=1), full) < SAME_MATH_ATOL


@torch.no_grad()
def test_static_cache_decode_with_cache_position(model):
    """Static decode: slots come from `cache_position`, so a step can be replayed after seeking back."""
    full = model(input_ids=ids(), audio_codes=codes(), use_cache=False).logits
    cache = StaticCache(config=model.config, max_cache_len=160)
    model(input_ids=ids()[:, :100], audio_codes=codes()[..., :100], past_key_values=cache)
    for t in (*range(100, 110), *range(105, 110)):  # 105..109 twice: rewritten in place, same result
        step = model(
            input_ids=ids()[:, t : t + 1],
            audio_codes=codes()[..., t : t + 1],
            past_key_values=cache,
            cache_position=torch.tensor([t]),
            position_ids=torch.tensor([[t]]),
        )
        assert max_diff(step.logits[:, 0], full[:, t]) < SAME_MATH_ATOL, t


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_left_padded_batch_matches_unpadded_rows(attn):
    model = load_tiny(attn=attn)
    pad = 30
    short_ids, short_codes = ids()[:, pad:], codes()[..., pad:]
    input_ids = torch.cat([ids(), F.pad(short_ids, (pad, 0), value=model.config.pad_token_id)])
    audio_codes = torch.cat([codes(), F.pad(short_codes, (pad, 0))])
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :pad] = 0
    batch = model(input_ids=input_ids, audio_codes=audio_codes, attention_mask=attention_mask)
    assert max_diff(batch.logits[0], model(input_ids=ids(), audio_codes=codes()).logits[0]) < SAME_MATH_ATOL
    alone = model(input_ids=short_ids, audio_codes=short_codes).logits[0]
    assert max_diff(batch.logits[1, pad:], alone) < SAME_MATH_ATOL
    # decode one more token for both rows with the padded cache: positions continue from the mask
    next_ids, next_codes = ids()[:, 40:41].repeat(2, 1), codes()[..., 40:41].repeat(2, 1, 1)
    step = model(
        input_ids=next_ids,
        audio_codes=next_codes,
        attention_mask=F.pad(attention_mask, (0, 1), value=1),
        past_key_values=batch.cache,
    )
    alone_step = model(
        input_ids=torch.cat([short_ids, next_ids[:1]], 1),
        audio_codes=torch.cat([short_codes, next_codes[:1]], 2),
    )
    assert max_diff(step.logits[1, -1], alone_step.logits[0, -1]) < SAME_MATH_ATOL


@torch.no_grad()
def test_fast_cache_is_reused_across_frames_without_clearing(model):
    decoder = model.audio_decoder
    hidden = torch.randn(2, decoder.config.text_dim)
    codes = torch.randint(0, decoder.config.vocab_size, (2, decoder.config.num_codebooks))

    def frame(cache, h):
        logits = [decoder.decode_step(decoder.project_in(h)[:, None], 0, cache)]
        for k in range(1, decoder.config.num_codebooks):
            logits.append(decoder.decode_step(decoder.embed_codes(codes[:, k - 1])[:, None], k, cache))
        return torch.stack(logits, 1)

    reused = decoder.make_fast_cache(2)
    frame(reused, torch.randn(2, decoder.config.text_dim))  # stale slots from a previous frame
    assert torch.equal(frame(reused, hidden), frame(decoder.make_fast_cache(2), hidden))
    assert max_diff(frame(reused, hidden), decoder(hidden, codes)) < SAME_MATH_ATOL


@torch.no_grad()
def test_logits_to_keep_and_tuple_output(model):
    full = model(input_ids=ids(), audio_codes=codes())
    last = model(input_ids=ids(), audio_codes=codes(), logits_to_keep=1)
    assert last.logits.shape == (1, 1, 512) and last.last_hidden_state.shape == (1, 1, 64)
    assert max_diff(last.logits[:, 0], full.logits[:, -1]) < SAME_MATH_ATOL
    as_tuple = model(input_ids=ids(), audio_codes=codes(), return_dict=False, use_cache=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], full.logits)


@torch.no_grad()
def test_inputs_embeds_path_equals_ids_path(model):
    embeds = model.embed_inputs(ids(), codes())
    assert torch.equal(model(inputs_embeds=embeds).logits, model(input_ids=ids(), audio_codes=codes()).logits)


@torch.no_grad()
def test_embedding_rule_scales_only_semantic_positions(model):
    embeds = model.embed_inputs(ids(), codes())[0]
    text_table = model.text_model.model.embeddings.weight
    is_semantic = (ids()[0] >= 419) & (ids()[0] <= 482)
    assert torch.equal(embeds[~is_semantic], text_table[ids()[0][~is_semantic]])
    t = int(is_semantic.nonzero()[0])
    rows = codes()[0, :, t] + torch.arange(10) * 64
    expected = (
        text_table[ids()[0, t]] + model.audio_decoder.codebook_embeddings.weight[rows].sum(0)
    ) / 11**0.5
    assert torch.allclose(embeds[t], expected, atol=1e-6)


@torch.no_grad()
def test_training_loss_matches_reference_outputs(model):
    out = model(input_ids=ids(), audio_codes=codes(), labels=ids())
    # the prompt's semantic next-tokens are all fast-step positions but the last (which predicts the first generated frame)
    ref_fast = expected_tensors("teacher_forced_fp32")["fast_step_logits"][:-1]
    ref_slow_loss = F.cross_entropy(expected_tensors("teacher_forced_fp32")["slow_logits"][:-1], ids()[0, 1:])
    ref_fast_loss = F.cross_entropy(ref_fast.flatten(0, 1), frames()[1:, :-1].T.flatten())
    assert max_diff(out.fast_logits, ref_fast) < FP32_ATOL
    assert abs(out.loss.item() - (ref_slow_loss + ref_fast_loss).item()) < FP32_ATOL
    # -100 labels drop positions from both losses
    text_only = ids().clone()
    text_only[0, 60:] = -100
    out = model(input_ids=ids(), audio_codes=codes(), labels=text_only)
    assert out.fast_logits.shape == (0, 10, 64)
    assert (
        abs(
            out.loss.item()
            - F.cross_entropy(
                expected_tensors("teacher_forced_fp32")["slow_logits"][:59], ids()[0, 1:60]
            ).item()
        )
        < FP32_ATOL
    )


def test_training_step_backpropagates_into_both_transformers():
    model = load_tiny().train()
    model.activation_checkpointing_enable()
    loss = model(input_ids=ids(), audio_codes=codes(), labels=ids()).loss
    loss.backward()
    for name in (
        "text_model.model.embeddings.weight",
        "audio_decoder.codebook_embeddings.weight",
        "audio_decoder.output.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_model_has_no_buffers_sized_by_max_seq_len(model):
    assert list(model.buffers()) == []  # RoPE and masks are computed from positions


@pytest.mark.parametrize(
    ("make_kwargs", "message"),
    [
        (
            lambda: {"input_ids": ids(), "audio_codes": codes()[:, :9]},
            r"audio_codes must be \[batch, num_codebooks, seq_len\]",
        ),
        (lambda: {"input_ids": ids()[0]}, r"input_ids must be \[batch, seq_len\]"),
        (lambda: {"input_ids": ids() + 512}, r"outside the vocabulary \[0, 512\)"),
        (lambda: {"input_ids": ids(), "audio_codes": codes() + 64}, r"codes outside \[0, 64\)"),
        (
            lambda: {"input_ids": ids(), "labels": ids()},
            r"labels contain semantic tokens: pass the frames' `audio_codes`",
        ),
        (
            lambda: {"input_ids": ids(), "inputs_embeds": torch.zeros(1, 135, 64)},
            r"exactly one of `input_ids` or `inputs_embeds`",
        ),
        (
            lambda: {"input_ids": ids(), "audio_codes": codes(), "labels": ids()[:, 1:]},
            r"labels must be \[batch, seq_len\]",
        ),
    ],
)
@torch.no_grad()
def test_bad_inputs_get_clear_errors(model, make_kwargs, message):
    kwargs = make_kwargs()
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


@torch.no_grad()
def test_fast_decoder_rejects_bad_shapes(model):
    decoder = model.audio_decoder
    with pytest.raises(ValueError, match=r"codes must be \[N, num_codebooks\] = \[3, 10\]"):
        decoder(torch.zeros(3, 64), torch.zeros(3, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"hidden_states must be \[N, 64\]"):
        decoder(torch.zeros(3, 48), torch.zeros(3, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"inputs_embeds must be \[N, 1, 48\]"):
        decoder.decode_step(torch.zeros(3, 48), 0, decoder.make_fast_cache(3))


def test_real_s2_pro_config_on_meta_device_matches_the_hub_inventory():
    inventory = json.loads((INVENTORY / "model_state_dict_inventory.json").read_text())
    with torch.device("meta"):
        model = FishS2ForConditionalGeneration(FishS2Config())
    assert sum(p.numel() for p in model.parameters()) == inventory["n_parameters"] == 4_561_852_416
    shapes = {key: list(tensor.shape) for key, tensor in model.state_dict().items()}
    assert shapes == {key: entry["shape"] for key, entry in inventory["tensors"].items()}

    bf16_bytes = sum(2 * tensor.numel() for tensor in model.state_dict().values())
    assert bf16_bytes == 9_123_704_832  # the Hub index's total_size


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rms_norm_and_table_rope_give_the_reference_formulas_bits(dtype):
    """The layers' few-call forms (F.rms_norm, RoPE as x·cos + swapped·sin) against the reference's op order."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 5, 4, 64, generator=generator) * 7).to(dtype)
    norm = FishS2RMSNorm(64).to(dtype)
    torch.nn.init.normal_(norm.weight, generator=generator)
    x_f32 = x.float()
    expected = (x_f32 * torch.rsqrt(x_f32.pow(2).mean(-1, keepdim=True) + norm.eps)).type_as(x) * norm.weight
    assert torch.equal(norm(x), expected)

    cos, sin = rope_cos_sin(torch.arange(5), rope_inverse_frequencies(64, 1e6))
    even, odd = x_f32[..., 0::2], x_f32[..., 1::2]
    c, s = cos[:, None], sin[:, None]  # broadcast over the 4 heads
    expected = torch.stack((even * c - odd * s, odd * c + even * s), dim=-1).flatten(-2).type_as(x)
    table_cos, table_sin = rotation_tables(cos, sin)
    assert torch.equal(apply_interleaved_rope(x, table_cos[:, None], table_sin[:, None]), expected)


@torch.no_grad()
def test_fast_step_reuses_its_position_constants_and_matches_tensor_positions(model):
    """Int positions reuse one RoPE row and mask per position (for any batch size); tensor positions build them."""
    decoder = model.audio_decoder
    hidden = expected_tensors("teacher_forced_fp32")["train_slow_hidden_normed"][positions()[:2]]
    inputs = decoder.project_in(hidden)[:, None]
    by_int = [decoder.decode_step(inputs, 0, decoder.make_fast_cache(2)) for _ in range(2)]
    by_tensor = decoder.decode_step(inputs, torch.tensor(0), decoder.make_fast_cache(2))
    assert torch.equal(by_int[0], by_int[1]) and torch.equal(by_int[0], by_tensor)
    assert [key for key in decoder._step_constants if key[:2] == (0, 1)]
