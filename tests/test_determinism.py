"""Determinism on CPU: the same seed gives the same codes, whatever ran before; greedy needs no seed.

GPU caveats (other noise generator, non-deterministic kernels, compile vs eager) are in docs/reliability.md.
"""

from __future__ import annotations

import torch
from conftest import TINY

from transformers_fish_s2 import FishS2ForConditionalGeneration, generate_long

TEXT = "Nice to meet you. How are you today?"
OTHER = "A different request, longer than the first one, in a batch of two."
DIALOGUE = "<|speaker:0|>Hello there. <|speaker:1|>Hi! How are you? <|speaker:0|>Fine, thanks."
SAMPLED = {"max_new_tokens": 16}  # the shipped sampling defaults


def sample(model, inputs, seed: int, **kwargs) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.generate(**inputs, **{**SAMPLED, **kwargs}).sequences


def test_same_seed_same_codes_across_calls_other_requests_and_a_fresh_model(model, processor):
    inputs = processor(TEXT)
    first = sample(model, inputs, seed=0)
    assert first.shape[-1] == SAMPLED["max_new_tokens"]
    torch.testing.assert_close(sample(model, inputs, seed=0), first, rtol=0, atol=0)
    sample(
        model, processor([OTHER, TEXT]), seed=5
    )  # replaces the reused decode state (batch 2, other length)
    model.generate(**inputs, do_sample=False, max_new_tokens=3)  # greedy in between
    torch.testing.assert_close(sample(model, inputs, seed=0), first, rtol=0, atol=0)
    fresh = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    torch.testing.assert_close(sample(fresh, inputs, seed=0), first, rtol=0, atol=0)


def test_different_seeds_give_different_codes(model, processor):
    inputs = processor(TEXT)
    runs = [sample(model, inputs, seed=seed) for seed in range(4)]
    distinct = {tuple(run.flatten().tolist()) for run in runs}
    assert len(distinct) >= 3


def test_greedy_is_deterministic_and_leaves_the_random_state_alone(model, processor):
    inputs = processor([TEXT, OTHER])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = model.generate(**inputs, do_sample=False, max_new_tokens=10).sequences
    assert torch.equal(torch.get_rng_state(), state)  # greedy draws no noise
    torch.manual_seed(999)
    torch.testing.assert_close(
        model.generate(**inputs, do_sample=False, max_new_tokens=10).sequences, first, rtol=0, atol=0
    )


def test_seeded_long_text_and_audio_are_reproducible(model, processor):
    def run() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(7)
        output = generate_long(model, processor, DIALOGUE, chunk_length=20, max_new_tokens=6)
        return output.sequences, processor.decode(output)

    assert len(processor.chunk_text(DIALOGUE, chunk_length=20)) == 3
    codes, audio = run()
    assert codes.shape[-1] > 0 and audio.shape == (codes.shape[-1] * 2048,)
    again_codes, again_audio = run()
    torch.testing.assert_close(again_codes, codes, rtol=0, atol=0)
    torch.testing.assert_close(again_audio, audio, rtol=0, atol=0)


def test_codec_round_trip_is_deterministic(processor):
    torch.manual_seed(0)
    audio = torch.rand(2, 1, 3 * 2048) - 0.5
    codec = processor.codec
    codes = codec.encode(audio).audio_codes
    torch.testing.assert_close(codec.encode(audio).audio_codes, codes, rtol=0, atol=0)
    torch.testing.assert_close(
        codec.decode(codes).audio_values, codec.decode(codes).audio_values, rtol=0, atol=0
    )
