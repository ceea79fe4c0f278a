"""Long-run stability: many consecutive requests on one model and processor keep memory flat.

Each request builds a prompt (every other one with a new reference voice, so the reference-code cache keeps
churning), generates a few frames (greedy and sampled, batch 1 and 2, three prompt lengths, so the reused decode
state is both kept and replaced) and decodes the audio. After a warm-up, resident memory (``/proc/self/statm``)
and the number of live tensors must not grow: a leak of one tiny KV cache per call would add ~30 MB here.
"""

from __future__ import annotations

import gc
import os
from unittest import mock

import numpy as np
import torch
from conftest import TINY

from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor

TEXTS = [
    "Nice to meet you. How are you today?",
    "Hello! This is a tiny parity test.",
    "One more sentence, a little longer than the others, so the prompt length changes.",
]
WARM_UP, RUNS = 20, 200
MAX_RSS_GROWTH_MB = 12
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE / 2**20


def live_tensors() -> int:
    gc.collect()
    return sum(issubclass(type(obj), torch.Tensor) for obj in gc.get_objects())


def test_repeated_requests_keep_memory_flat_and_the_reference_cache_bounded():
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    processor = FishS2Processor.from_pretrained(TINY, reference_cache_size=8)
    rng = np.random.default_rng(0)

    def request(i: int) -> None:
        references = None
        if i % 2:  # a voice never seen before: encoded, cached, eventually evicted
            voice = rng.uniform(-0.5, 0.5, 2048).astype(np.float32)
            references = [{"text": "A reference.", "audio": voice, "sampling_rate": 44100}]
        text = TEXTS[i % 3] if i % 4 else TEXTS[:2]
        output = model.generate(
            **processor(text, references=references), max_new_tokens=4, do_sample=bool(i % 3)
        )
        waveforms = processor.batch_decode(output)
        assert len(waveforms) == output.sequences.shape[0]

    for i in range(WARM_UP):
        request(i)
    tensors_before, rss_before = live_tensors(), rss_mb()
    for i in range(RUNS):
        request(WARM_UP + i)
    tensors_after, rss_after = live_tensors(), rss_mb()
    assert rss_after - rss_before < MAX_RSS_GROWTH_MB
    assert tensors_after <= tensors_before
    assert len(processor._reference_encoder) == 8  # LRU bound held while 110 new voices went through


def test_reference_cache_is_an_lru_of_the_configured_size():
    """A hit makes a voice the most recent, so the next miss evicts the least recently *used* voice; a
    first-in-first-out cache would evict the oldest *inserted* one instead and fail the hit counts below."""
    processor = FishS2Processor.from_pretrained(TINY, reference_cache_size=3)
    voices = [np.random.default_rng(seed).uniform(-0.5, 0.5, 2048).astype(np.float32) for seed in range(5)]

    def encode(voice: np.ndarray) -> torch.Tensor:
        inputs = processor(
            "Hi.", references=[{"text": "A reference.", "audio": voice, "sampling_rate": 44100}]
        )
        return inputs["audio_codes"]

    with mock.patch.object(processor.codec, "encode", wraps=processor.codec.encode) as codec_encode:
        first = [encode(voice) for voice in voices]  # cached now: voices 2, 3, 4 (oldest first)
        assert codec_encode.call_count == 5 and len(processor._reference_encoder) == 3
        torch.testing.assert_close(encode(voices[2]), first[2], rtol=0, atol=0)
        assert codec_encode.call_count == 5  # a hit: voice 2 becomes the most recently used
        encode(voices[0])  # a miss: evicts voice 3, the least recently used (FIFO would evict voice 2)
        assert codec_encode.call_count == 6
        torch.testing.assert_close(encode(voices[2]), first[2], rtol=0, atol=0)
        assert codec_encode.call_count == 6  # still cached
        torch.testing.assert_close(encode(voices[3]), first[3], rtol=0, atol=0)
        assert codec_encode.call_count == 7  # evicted, encoded again to the same codes
    assert len(processor._reference_encoder) == 3
    no_cache = FishS2Processor.from_pretrained(TINY, reference_cache_size=0)
    no_cache("Hi.", references=[{"text": "A reference.", "audio": voices[0], "sampling_rate": 44100}])
    assert len(no_cache._reference_encoder) == 0
