"""The reference sampler, checked against one recorded decode step of the authors' code."""

from __future__ import annotations

import pytest
import torch
from conftest import expected_tensors
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from transformers_fish_s2.modeling.sampling import (
    FishS2Sampler,
    apply_repetition_penalty,
    exponential_race,
    logits_to_probs,
)

# The trace is run case2_clone, parameter set A (temperature 0.8, top_p 0.8, top_k 30), fp32.
VOCAB, SEMANTIC_START, SEMANTIC_END, IM_END = 512, 419, 482, 386


@pytest.fixture(scope="module")
def trace() -> dict[str, torch.Tensor]:
    return expected_tensors("sampling_trace")


def make_sampler(do_sample: bool = True, **overrides) -> FishS2Sampler:
    params = dict(
        temperature=0.8, top_p=0.8, top_k=30, ras_temperature=1.0, ras_top_p=0.9, repetition_penalty=1.0
    )
    params.update(overrides)
    return FishS2Sampler.build(
        do_sample=do_sample,
        **params,
        vocab_size=VOCAB,
        semantic_start_token_id=SEMANTIC_START,
        semantic_end_token_id=SEMANTIC_END,
        eos_token_id=IM_END,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def test_logit_bias_matches_reference(trace):
    assert torch.equal(make_sampler().logit_bias, trace["slow.logit_bias"])


def test_probs_bit_exact(trace):
    sampler = make_sampler()
    biased = trace["slow.biased_logits"]
    normal = logits_to_probs(biased, sampler.temperature, sampler.top_p, sampler.top_k)
    ras = logits_to_probs(biased, sampler.ras_temperature, sampler.ras_top_p, sampler.top_k)
    fast = logits_to_probs(trace["fast.logits"], sampler.temperature, sampler.top_p, sampler.top_k)
    assert torch.equal(normal, trace["slow.normal.probs"])
    assert torch.equal(ras, trace["slow.ras.probs"])
    assert torch.equal(fast, trace["fast.probs"])  # [9, 64]: rows are independent


def test_race_reproduces_reference_draws(trace):
    assert exponential_race(trace["slow.normal.probs"], trace["slow.normal.noise"]).item() == 474
    assert exponential_race(trace["slow.ras.probs"], trace["slow.ras.noise"]).item() == 448
    fast = exponential_race(trace["fast.probs"], trace["fast.noise"])
    assert torch.equal(fast, trace["fast.tokens"].long())


def test_ras_replaces_a_repeated_semantic_token(trace):
    sampler = make_sampler()
    window = trace["slow.ras_window"][0].long()[None]  # row 0 = main tokens of the last 10 frames
    assert (window == 474).any()
    token = sampler.sample_semantic_token(
        trace["slow.raw_logits"][None],
        window,
        trace["slow.normal.noise"][None],
        trace["slow.ras.noise"][None],
    )
    assert token.item() == trace["slow.chosen_token"].item() == 448
    # With an empty window (zeros, as at the start of decoding) the normal draw is kept.
    token = sampler.sample_semantic_token(
        trace["slow.raw_logits"][None],
        torch.zeros_like(window),
        trace["slow.normal.noise"][None],
        trace["slow.ras.noise"][None],
    )
    assert token.item() == 474


def test_codes_match_reference(trace):
    sampler = make_sampler()
    codes = sampler.sample_code(trace["fast.logits"], trace["fast.noise"])
    assert torch.equal(codes, trace["fast.tokens"].long())


def test_batched_rows_equal_single_rows(trace):
    sampler = make_sampler()
    logits = torch.stack(
        [trace["slow.raw_logits"], trace["slow.raw_logits"].flip(0), trace["slow.raw_logits"] * 0.5]
    )
    noise = torch.rand(3, 2, VOCAB, generator=torch.Generator().manual_seed(0))
    window = torch.randint(SEMANTIC_START, SEMANTIC_END, (3, 10), generator=torch.Generator().manual_seed(1))
    batched = sampler.sample_semantic_token(logits, window, noise[:, 0], noise[:, 1])
    single = [
        sampler.sample_semantic_token(
            logits[i : i + 1], window[i : i + 1], noise[i : i + 1, 0], noise[i : i + 1, 1]
        )
        for i in range(3)
    ]
    assert torch.equal(batched, torch.cat(single))
    probs = logits_to_probs(logits + sampler.logit_bias, sampler.temperature, sampler.top_p, sampler.top_k)
    for i in range(3):
        row = logits_to_probs(
            logits[i] + sampler.logit_bias, sampler.temperature, sampler.top_p, sampler.top_k
        )
        assert torch.equal(probs[i], row)


def test_top_p_drops_the_crossing_token_and_keeps_rank_zero():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    one, k_all = torch.tensor(1.0), torch.tensor(4)
    probs = logits_to_probs(logits, one, torch.tensor(0.7), k_all)
    # cumulative 0.5, 0.8 (> 0.7: the crossing token goes too), 0.95, 1.0
    assert probs.nonzero().flatten().tolist() == [0]
    probs = logits_to_probs(logits, one, torch.tensor(0.85), k_all)
    assert probs.nonzero().flatten().tolist() == [0, 1]
    torch.testing.assert_close(probs[:2], torch.tensor([0.625, 0.375]))
    probs = logits_to_probs(logits, one, torch.tensor(0.1), k_all)  # even a tiny top_p keeps the best token
    assert probs.nonzero().flatten().tolist() == [0]
    probs = logits_to_probs(logits, one, torch.tensor(1.0), torch.tensor(2))
    assert probs.nonzero().flatten().tolist() == [0, 1]


def test_temperature_applies_after_filtering():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    probs = logits_to_probs(logits, torch.tensor(0.5), torch.tensor(0.85), torch.tensor(4))
    # the set was chosen untempered ({0, 1}); temperature 0.5 squares then renormalises
    torch.testing.assert_close(probs[:2], torch.tensor([0.25, 0.09]) / 0.34)
    assert probs[2:].eq(0).all()


def test_greedy_draws_no_noise_and_takes_the_constrained_argmax(trace):
    sampler = make_sampler(do_sample=False)
    logits = trace["slow.raw_logits"][None]
    token = sampler.sample_semantic_token(logits, torch.zeros(1, 10, dtype=torch.long), None, None)
    assert token.item() == torch.argmax(trace["slow.biased_logits"]).item()
    assert sampler.is_semantic(token).item() or token.item() == IM_END
    codes = sampler.sample_code(trace["fast.logits"], None)
    assert torch.equal(codes, trace["fast.logits"].argmax(-1))


def test_top_k_one_sampling_equals_greedy(trace):
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(3))
    noise = torch.rand(4, 2, VOCAB, generator=torch.Generator().manual_seed(4))
    window = torch.zeros(4, 10, dtype=torch.long)
    sampled = make_sampler(top_k=1).sample_semantic_token(logits, window, noise[:, 0], noise[:, 1])
    greedy = make_sampler(do_sample=False).sample_semantic_token(logits, window, None, None)
    assert torch.equal(sampled, greedy)


def test_repetition_penalty_matches_transformers_on_the_window():
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(5))
    recent = torch.tensor([[3, 7, 7, 9], [1, 2, 3, 4]])
    ours = apply_repetition_penalty(logits, recent, 1.3)
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(recent, logits.clone())
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_repetition_penalty_changes_the_greedy_token():
    logits = torch.full((1, VOCAB), -5.0)
    logits[0, SEMANTIC_START + 1] = 2.0
    logits[0, SEMANTIC_START + 2] = 1.8
    window = torch.full((1, 10), SEMANTIC_START + 1)
    plain = make_sampler(do_sample=False).sample_semantic_token(logits, window, None, None)
    penalised = make_sampler(do_sample=False, repetition_penalty=1.2).sample_semantic_token(
        logits, window, None, None
    )
    assert plain.item() == SEMANTIC_START + 1 and penalised.item() == SEMANTIC_START + 2


def test_per_row_parameters_equal_each_row_sampled_alone(trace):
    """One batch, three rows with their own temperature / top_p / top_k / penalty: each row's token is what a
    sampler holding only that row's values draws."""
    logits = trace["slow.raw_logits"].expand(3, -1)
    noise = torch.rand(3, 2, VOCAB, generator=torch.Generator().manual_seed(6))
    window = torch.randint(SEMANTIC_START, SEMANTIC_END, (3, 10), generator=torch.Generator().manual_seed(7))
    rows = [
        dict(temperature=0.8, top_p=0.8, top_k=30, repetition_penalty=1.0),
        dict(temperature=1.5, top_p=1.0, top_k=0, repetition_penalty=1.3),
        dict(temperature=0.3, top_p=0.5, top_k=3, repetition_penalty=2.0),
    ]
    batched = make_sampler(batch_size=3, **{key: [row[key] for row in rows] for key in rows[0]})
    assert batched.temperature.shape == (3, 1) and batched.use_repetition_penalty
    tokens = batched.sample_semantic_token(logits, window, noise[:, 0], noise[:, 1])
    for i, row in enumerate(rows):
        alone = make_sampler(**row).sample_semantic_token(
            logits[i : i + 1], window[i : i + 1], noise[i : i + 1, 0], noise[i : i + 1, 1]
        )
        assert tokens[i] == alone[0], row
